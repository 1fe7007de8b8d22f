package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server/sqlstore"
	"github.com/tethersync/tether/wire"
)

// dialect is the MySQL dialect of sqlstore.
type dialect struct {
	db        *sql.DB
	collation string // binary, no pad
}

// Name implements sqlstore.Dialect.
func (*dialect) Name() string { return "mysql" }

// Rebind implements sqlstore.Dialect: MySQL reads ? placeholders.
func (*dialect) Rebind(q string) string { return q }

// Time implements sqlstore.Dialect: DATETIME(6) in UTC.
func (*dialect) Time(t time.Time) any { return t.UTC() }

// ForUpdate implements sqlstore.Dialect.
func (*dialect) ForUpdate() string { return " FOR UPDATE" }

// ReadOptions implements sqlstore.Dialect: a repeatable-read snapshot.
func (*dialect) ReadOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

// WriteOptions implements sqlstore.Dialect: read committed, so that
// locking reads take no gap locks (commits are serialized by the tenant's
// row, sessions by theirs).
func (*dialect) WriteOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

// Retryable implements sqlstore.Dialect: deadlocks and lock wait timeouts.
func (*dialect) Retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// After implements sqlstore.Dialect. MariaDB does not seek an index with
// a row value: the position is spelled out as two ranges.
func (*dialect) After(version int64, id string) (string, []any) {
	return `("_version" > ? OR ("_version" = ? AND "id" > ?))`, []any{version, version, id}
}

// Text implements sqlstore.Dialect.
func (*dialect) Text(col string) string { return col }

// JSON implements sqlstore.Dialect: "_colvers" is text.
func (*dialect) JSON(expr string) string { return expr }

// ByteOrder implements sqlstore.Dialect: ids are stored in a binary
// collation.
func (*dialect) ByteOrder(col string) string { return col }

// NextVersion implements sqlstore.Dialect: the tenant's row of
// _tether_tenants, locked until the commit ends, counts its versions.
func (*dialect) NextVersion(ctx context.Context, tx *sql.Tx, tenant string) (int64, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO _tether_tenants (tenant, version, device) VALUES (?, 1, '')
		ON DUPLICATE KEY UPDATE version = version + 1`, tenant); err != nil {
		return 0, fmt.Errorf("lock tenant: %w", err)
	}
	var v int64
	err := tx.QueryRowContext(ctx, `SELECT version FROM _tether_tenants WHERE tenant = ?`, tenant).Scan(&v)
	return v, err
}

// Stage implements sqlstore.Dialect with multi-row inserts; a row staged
// again by a later batch replaces the earlier copy, and an earlier batch
// sent again does not replace a later one.
func (*dialect) Stage(ctx context.Context, _ *sql.Conn, tx *sql.Tx, t *sqlstore.Table, tenant, session string, seq int, rows []wire.Row) error {
	// Assignments run left to right on the updated row: "_seq" goes last.
	tail := `ON DUPLICATE KEY UPDATE ` + t.RestageSet(func(c string) string {
		return fmt.Sprintf(`%s = IF(VALUES("_seq") >= "_seq", VALUES(%s), %s)`, c, c, c)
	})
	return sqlstore.StageInsert(ctx, tx, t, tenant, session, seq, rows, tail)
}

// Latest implements sqlstore.Dialect: a session holds one copy of a row.
func (*dialect) Latest(t *sqlstore.Table) string {
	return `SELECT * FROM ` + t.Stage + ` WHERE "_tenant" = ? AND "_session" = ?`
}

// Upsert implements sqlstore.Dialect. The target's columns are named
// with the table, since the merge's SELECT joins the table too.
func (*dialect) Upsert(t *sqlstore.Table) string {
	return `ON DUPLICATE KEY UPDATE ` + t.MergeSet(func(c string) string { return fmt.Sprintf("%s.%s = VALUES(%s)", t.Name, c, c) }) +
		`, ` + t.Name + `."_colvers" = JSON_MERGE_PATCH(` + t.Name + `."_colvers", VALUES("_colvers"))`
}

// ColumnVersions implements sqlstore.Dialect, with JSON_TABLE.
func (*dialect) ColumnVersions(changed string) string {
	return `coalesce((SELECT JSON_OBJECTAGG(j.c, ?) FROM JSON_TABLE(` + changed + `, '$[*]' COLUMNS (c VARCHAR(64) PATH '$')) AS j), '{}')`
}

// ValueIndex implements sqlstore.ValueIndexer: a text column (LONGTEXT)
// is indexed by its first 200 characters.
func (d *dialect) ValueIndex(table, name string, c entity.Column) string {
	col := sqlident.Quote(c.Name)
	if strings.HasPrefix(d.valueType(c), "LONGTEXT") {
		col += "(200)"
	}
	return fmt.Sprintf(`CREATE INDEX %s ON %s ("_tenant", %s)`, sqlident.Quote(name), sqlident.Quote(table), col)
}
