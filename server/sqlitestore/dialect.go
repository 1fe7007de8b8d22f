package sqlitestore

import (
	"context"
	"database/sql"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server/sqlstore"
	"github.com/tethersync/tether/wire"
)

// dialect is the SQLite dialect of sqlstore.
type dialect struct{}

// Name implements sqlstore.Dialect.
func (dialect) Name() string { return "sqlite" }

// Rebind implements sqlstore.Dialect: SQLite reads ? placeholders.
func (dialect) Rebind(q string) string { return q }

// Time implements sqlstore.Dialect: times are entity.TimeFormat text.
func (dialect) Time(t time.Time) any { return entity.FormatTime(t) }

// ForUpdate implements sqlstore.Dialect: the single writer connection
// serializes every write transaction.
func (dialect) ForUpdate() string { return "" }

// ReadOptions implements sqlstore.Dialect: a read transaction in WAL mode
// is a snapshot.
func (dialect) ReadOptions() *sql.TxOptions { return nil }

// WriteOptions implements sqlstore.Dialect: the single writer.
func (dialect) WriteOptions() *sql.TxOptions { return nil }

// Retryable implements sqlstore.Dialect: the single writer never
// deadlocks; a busy database has waited for its busy timeout already.
func (dialect) Retryable(error) bool { return false }

// After implements sqlstore.Dialect with a row value.
func (dialect) After(version int64, id string) (string, []any) {
	return sqlstore.RowValueAfter(version, id)
}

// Text implements sqlstore.Dialect.
func (dialect) Text(col string) string { return col }

// JSON implements sqlstore.Dialect: JSON is text.
func (dialect) JSON(expr string) string { return expr }

// ByteOrder implements sqlstore.Dialect: SQLite's BINARY collation.
func (dialect) ByteOrder(col string) string { return col }

// NextVersion implements sqlstore.Dialect: the tenant's counter, under
// the single writer.
func (dialect) NextVersion(ctx context.Context, tx *sql.Tx, tenant string) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, `INSERT INTO _tether_tenants (tenant, version, device) VALUES (?, 1, '')
		ON CONFLICT (tenant) DO UPDATE SET version = _tether_tenants.version + 1 RETURNING version`, tenant).Scan(&v)
	return v, err
}

// Stage implements sqlstore.Dialect with multi-row inserts; a row staged
// again by a later batch replaces the earlier copy, and an earlier batch
// sent again does not replace a later one.
func (dialect) Stage(ctx context.Context, _ *sql.Conn, tx *sql.Tx, t *sqlstore.Table, tenant, session string, seq int, rows []wire.Row) error {
	tail := `ON CONFLICT ("_tenant", "_session", "id") DO UPDATE SET ` +
		t.RestageSet(func(c string) string { return c + " = excluded." + c }) + ` WHERE excluded."_seq" >= "_seq"`
	return sqlstore.StageInsert(ctx, tx, t, tenant, session, seq, rows, tail)
}

// Latest implements sqlstore.Dialect: a session holds one copy of a row.
func (dialect) Latest(t *sqlstore.Table) string {
	return `SELECT * FROM ` + t.Stage + ` WHERE "_tenant" = ? AND "_session" = ?`
}

// Upsert implements sqlstore.Dialect.
func (dialect) Upsert(t *sqlstore.Table) string {
	return `ON CONFLICT ("_tenant", "id") DO UPDATE SET ` + t.MergeSet(func(c string) string { return c + " = excluded." + c }) +
		`, "_colvers" = json_patch("_colvers", excluded."_colvers")`
}

// ColumnVersions implements sqlstore.Dialect.
func (dialect) ColumnVersions(changed string) string {
	return `(SELECT json_group_object(j.value, ?) FROM json_each(` + changed + `) AS j)`
}

// TruncateStage implements sqlstore.StageTruncater: SQLite has one
// writer at a time.
func (dialect) TruncateStage() bool { return true }
