package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/tethersync/tether/wire"
)

// Dialect is the SQL that differs between databases. The session and
// commit flow ([Store]) is written once over it; each store package
// (sqlitestore, pgstore, mysqlstore) is a Dialect and an Open function.
//
// Statements the flow writes itself use ? placeholders (passed through
// Rebind), double-quoted identifiers, and only SQL that every supported
// database reads alike. The bookkeeping tables every dialect creates are:
//
//	_tether_devices  (tenant, device, user_name, created_at, seen_at, app_schema, pulled)
//	_tether_sessions (tenant, id, device, user_name, created_at, touched_at, committed_at, version, result, cols)
//	_tether_batches  (tenant, session, seq, tbl, rows, bytes, attempt)
//	_tether_audit    (tenant, version, tbl, id, deleted, user_name, device, session, at)
//	_tether_horizons (tenant, version): deletions before version were purged
//
// (plus whatever NextVersion needs: a counter, a sequence, a row per
// tenant), and for every synced table T, T itself ("_tenant", the columns,
// "_version", "_deleted", "_hlc", "_modified_by", "_origin", "_session",
// "_colvers", "_reason", "_notify", "_pushed"; an index on "_tenant",
// "_version", "id" and one per reference column) and its staging table
// "_tether_stage_T" ("_tenant", "_session", "_seq", "_base", "_deleted",
// "_hlc", "_changed", "_present", "_exact", the columns; the latest copy of
// a row per tenant, session and id).
type Dialect interface {
	// Name names the database in errors: "sqlite", "postgres", "mysql".
	Name() string
	// Rebind rewrites a statement written with ? placeholders into the
	// database's own.
	Rebind(query string) string
	// Migrate creates the bookkeeping tables and those of tables in tx, or
	// upgrades them: it adds what is missing and never drops data.
	Migrate(ctx context.Context, tx *sql.Tx, tables []*Table) error
	// Time is the value a server time is stored as.
	Time(t time.Time) any
	// ForUpdate is appended to a SELECT that must lock the rows it reads
	// until the transaction ends ("" where writers are serialized anyway).
	ForUpdate() string
	// ReadOptions are the options of the read transaction of a pull page:
	// one consistent snapshot of every table.
	ReadOptions() *sql.TxOptions
	// WriteOptions are the options of write transactions.
	WriteOptions() *sql.TxOptions
	// Retryable reports whether err (a deadlock, a serialization failure)
	// means the transaction may succeed if run again.
	Retryable(err error) bool
	// NextVersion serializes the commits of tenant, in tx, and returns the
	// version of this one: larger than every version the tenant's earlier
	// commits got, and made visible in commit order (G1).
	NextVersion(ctx context.Context, tx *sql.Tx, tenant string) (int64, error)
	// Stage writes rows, all of table t, as batch seq of a session into
	// t's staging table, in tx; conn is tx's connection, for bulk paths
	// that need the driver (COPY). A row staged again by a later batch
	// must supersede the earlier copy (see Latest).
	Stage(ctx context.Context, conn *sql.Conn, tx *sql.Tx, t *Table, tenant, session string, seq int, rows []wire.Row) error
	// Latest is a subquery of the staged rows of one session of t, the
	// latest copy of each id; its parameters are tenant and session.
	Latest(t *Table) string
	// Upsert is the clause after an INSERT … SELECT into t that, when a
	// row exists, updates every column and bookkeeping column to the
	// inserted values, and merges "_colvers" with the inserted column
	// versions.
	Upsert(t *Table) string
	// ColumnVersions is an expression, with one parameter (the commit's
	// version), of the JSON object mapping each column named in the JSON
	// array changed to that version.
	ColumnVersions(changed string) string
	// After is the condition selecting the rows after position (version,
	// id) in a table's commit order, "_version" then "id", with its
	// arguments: written so that the database seeks its index there.
	After(version int64, id string) (string, []any)
	// Text is an expression reading the JSON column col as text.
	Text(col string) string
	// JSON is an expression reading the text expression expr (such as a
	// parameter) as a value of the "_colvers" column's JSON type.
	JSON(expr string) string
	// ByteOrder is an ORDER BY term sorting the text column col by bytes.
	ByteOrder(col string) string
}

// Notice tells other server processes of a commit.
type Notice struct {
	Tenant  string `json:"tenant"`
	Version int64  `json:"version"`
	Device  string `json:"device"`
}

// CrossProcess is a dialect whose databases are shared by several server
// processes, which must learn of each other's commits. Without it, a
// store publishes its commits to the subscribers of its own process.
type CrossProcess interface {
	// Notify records n inside the commit's transaction, to be delivered
	// when (and only if) it commits.
	Notify(ctx context.Context, tx *sql.Tx, n Notice) error
	// Listen delivers the notices of every process until ctx ends or the
	// connection fails. It calls ready once it listens: no notice of a
	// commit after that is missed.
	Listen(ctx context.Context, ready func(), deliver func(Notice)) error
}
