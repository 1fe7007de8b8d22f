package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server/sqlstore"
)

// columnType implements the types of sqlstore.Column. Text is compared by
// bytes (the binary no-pad collation); the widths are those of
// sqlstore.Type, so that keys and indexes stay within InnoDB's limit.
func (d *dialect) columnType(c sqlstore.Column) string {
	text := func(n int) string { return fmt.Sprintf("VARCHAR(%d) COLLATE %s", n, d.collation) }
	switch c.Type {
	case sqlstore.TypeKey:
		return text(255)
	case sqlstore.TypeID:
		return text(64)
	case sqlstore.TypeRowID:
		return text(200) // server.MaxIDLength bytes
	case sqlstore.TypeStamp:
		return text(100)
	case sqlstore.TypeLabel:
		return text(1024)
	case sqlstore.TypeInt:
		return "BIGINT"
	case sqlstore.TypeBool:
		return "BOOLEAN"
	case sqlstore.TypeTime:
		return "DATETIME(6)"
	case sqlstore.TypeValue:
		return d.valueType(*c.Value)
	}
	return "LONGTEXT COLLATE " + d.collation // TypeText, TypeJSON
}

// valueType is the type of an app column.
func (d *dialect) valueType(c entity.Column) string {
	if c.Ref != "" { // ids, and indexed
		return fmt.Sprintf("VARCHAR(%d) COLLATE %s", 200, d.collation)
	}
	switch c.Kind {
	case entity.KindInteger:
		return "BIGINT"
	case entity.KindReal:
		return "DOUBLE"
	case entity.KindBool:
		return "BOOLEAN"
	case entity.KindBlob:
		return "LONGBLOB"
	case entity.KindTime:
		// entity.TimeFormat text: rows round-trip to the nanosecond.
		return "VARCHAR(40) COLLATE " + d.collation
	}
	return "LONGTEXT COLLATE " + d.collation
}

// CreateTable implements sqlstore.Dialect, with the indexes in the one
// statement: MySQL commits each DDL statement on its own.
func (d *dialect) CreateTable(t sqlstore.TableDef) []string {
	defs := []string{sqlstore.ColumnDefs(t, d.columnType), "PRIMARY KEY (" + sqlstore.ColumnList(t.Key) + ")"}
	for _, ix := range t.Indexes {
		defs = append(defs, fmt.Sprintf("INDEX %s (%s)", sqlident.Quote(ix.Name), sqlstore.ColumnList(ix.Columns)))
	}
	return []string{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (%s) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		sqlident.Quote(t.Name), strings.Join(defs, ", "))}
}

// AddColumn implements sqlstore.Dialect. A text column takes no default:
// in a synced table, the rows already there are set to it.
func (d *dialect) AddColumn(t sqlstore.TableDef, c sqlstore.Column) []string {
	if c.Value == nil {
		return []string{fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s`, sqlident.Quote(t.Name), sqlstore.ColumnDef(c, d.columnType))}
	}
	stmts := []string{fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s %s NULL`, sqlident.Quote(t.Name), sqlident.Quote(c.Name), d.columnType(c))}
	if t.Synced && !c.Value.Nullable {
		stmts = append(stmts, fmt.Sprintf(`UPDATE %s SET %s = %s`, sqlident.Quote(t.Name), sqlident.Quote(c.Name), c.Value.Default()))
	}
	return stmts
}

// Columns implements sqlstore.Dialect, in the current database.
func (*dialect) Columns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	return sqlstore.Names(ctx, tx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = ?`, table)
}

// Indexes implements sqlstore.Dialect, in the current database.
func (*dialect) Indexes(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	return sqlstore.Names(ctx, tx, `SELECT DISTINCT index_name FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = ?`, table)
}

// LockMigrations implements sqlstore.Dialect: several processes may start
// at once on an empty database, and a named lock makes them take turns.
func (*dialect) LockMigrations(ctx context.Context, db *sql.DB) (func(), error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return func() {}, err
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK('tether-migrate', 60)`).Scan(&got); err != nil || got.Int64 != 1 {
		conn.Close()
		if err == nil {
			err = fmt.Errorf("another process held the lock tether-migrate for 60s")
		}
		return func() {}, err
	}
	return func() {
		conn.ExecContext(context.WithoutCancel(ctx), `SELECT RELEASE_LOCK('tether-migrate')`)
		conn.Close()
	}, nil
}
