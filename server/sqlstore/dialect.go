package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// Dialect is the SQL that differs between databases. The session and
// commit flow ([Store]) is written once over it; each store package
// (sqlitestore, pgstore, mysqlstore) is a Dialect and an Open function.
//
// Statements the flow writes itself use ? placeholders (passed through
// Rebind), double-quoted identifiers, and only SQL that every supported
// database reads alike. The tables the store creates are described once,
// as [TableDef] values (see layout.go): the bookkeeping tables
// (_tether_devices, _tether_schemas, _tether_tenants, _tether_sessions,
// _tether_batches, _tether_audit, _tether_keys, _tether_captured,
// _tether_horizons and _tether_migrations), and for every synced table T, T itself and
// its staging table "_tether_stage_T". A dialect spells their types and
// DDL.
type Dialect interface {
	// Name names the database in errors: "sqlite", "postgres", "mysql".
	Name() string
	// Rebind rewrites a statement written with ? placeholders into the
	// database's own.
	Rebind(query string) string
	// CreateTable returns the statements that create table t, with its
	// key and indexes, unless it exists.
	CreateTable(t TableDef) []string
	// AddColumn returns the statements that add column c to table t,
	// which exists: in a synced table, the rows already there take the
	// app column's default.
	AddColumn(t TableDef, c Column) []string
	// Columns returns the names of the columns of table, in tx; none when
	// it does not exist.
	Columns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error)
	// Indexes returns the names of the indexes of table, in tx.
	Indexes(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error)
	// LockMigrations makes processes that open the same database at once
	// migrate it in turn: it takes a lock, on a connection of db of its
	// own if it needs one, that it holds until unlock (never nil), which
	// the store calls once the migration's transaction has ended.
	LockMigrations(ctx context.Context, db *sql.DB) (unlock func(), err error)
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
	// version of this one: the tenant's row of _tether_tenants counts its
	// versions (each tenant has its own: no member learns how many
	// commits other tenants make), and is locked until tx ends, so that
	// versions become visible in commit order (G1).
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

// ValueIndexer is a dialect that spells itself an index on a tenant and
// one app column: MySQL stores text columns as LONGTEXT, which it indexes
// by a prefix only. Other dialects use CreateIndex.
type ValueIndexer interface {
	// ValueIndex returns the CREATE INDEX statement of index name on
	// table's "_tenant" and column c.
	ValueIndex(table, name string, c entity.Column) string
}

// StageAnalyzer is a dialect whose planner must be told of a large
// session's staged rows before their commit. PostgreSQL's statistics of a
// staging table are those autovacuum last took, of a table nearly empty
// between commits, and of a table it has not analyzed since a large
// commit grew it: it planned the merge of 100,000 staged rows into a
// tenant holding 100,000 as a nested loop over every one of them (more
// than 10 minutes; 2 to 3 s once analyzed).
type StageAnalyzer interface {
	// AnalyzeStage refreshes the statistics of t and of its staging
	// table, outside any transaction of the store's (it needs the role
	// that owns them, as the store's migrations do).
	AnalyzeStage(ctx context.Context, db *sql.DB, t *Table) error
}

// AnalyzeRows is the number of rows a session stages in a table from which
// a StageAnalyzer refreshes its statistics before the commit.
const AnalyzeRows = 10_000
