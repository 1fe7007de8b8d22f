package pgstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server/sqlstore"
)

// columnType implements the types of sqlstore.Column.
func columnType(c sqlstore.Column) string {
	switch c.Type {
	case sqlstore.TypeInt:
		return "bigint"
	case sqlstore.TypeBool:
		return "boolean"
	case sqlstore.TypeTime:
		return "timestamptz"
	case sqlstore.TypeJSON:
		return "jsonb"
	case sqlstore.TypeValue:
		return valueType(c.Value.Kind)
	}
	return "text"
}

// valueType is the type of an app column of kind k.
func valueType(k entity.Kind) string {
	switch k {
	case entity.KindInteger:
		return "bigint"
	case entity.KindReal:
		return "double precision"
	case entity.KindBool:
		return "boolean"
	case entity.KindBlob:
		return "bytea"
	}
	// Times stay in entity.TimeFormat text: timestamptz keeps only
	// microseconds, and rows must round-trip exactly.
	return "text"
}

// CreateTable implements sqlstore.Dialect. A staging table keeps every
// copy of a row that COPY staged: its key is a plain index on the key and
// "_seq", which also gives Latest its order.
func (*dialect) CreateTable(t sqlstore.TableDef) []string {
	key := ", PRIMARY KEY (" + sqlstore.ColumnList(t.Key) + ")"
	indexes := t.Indexes
	if t.Stage {
		key = ""
		indexes = append([]sqlstore.Index{{Name: t.Name + "__key", Columns: append(t.Key[:len(t.Key):len(t.Key)], "_seq")}}, indexes...)
	}
	stmts := []string{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (%s%s)`, sqlident.Quote(t.Name), sqlstore.ColumnDefs(t, columnType), key)}
	for _, ix := range indexes {
		stmts = append(stmts, sqlstore.CreateIndex(t.Name, ix, true))
	}
	return stmts
}

// AddColumn implements sqlstore.Dialect.
func (*dialect) AddColumn(t sqlstore.TableDef, c sqlstore.Column) []string {
	if t.Synced && c.Value != nil { // the rows already there take the column's default
		c.Default = c.Value.Default()
	}
	return []string{fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s`, sqlident.Quote(t.Name), sqlstore.ColumnDef(c, columnType))}
}

// Columns implements sqlstore.Dialect, in the current schema.
func (*dialect) Columns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	return sqlstore.Names(ctx, tx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1`, table)
}

// Indexes implements sqlstore.Dialect, in the current schema.
func (*dialect) Indexes(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	return sqlstore.Names(ctx, tx, `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1`, table)
}

// LockMigrations implements sqlstore.Dialect: several processes may start
// at once on an empty database, and an advisory lock makes them take
// turns.
func (*dialect) LockMigrations(ctx context.Context, db *sql.DB) (func(), error) {
	return lockOn(ctx, db, `SELECT pg_advisory_lock(7354)`, `SELECT pg_advisory_unlock(7354)`)
}

// lockOn takes a lock with query lock on a connection of db of its own,
// and returns what releases it with query unlock and frees the connection.
func lockOn(ctx context.Context, db *sql.DB, lock, unlock string) (func(), error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return func() {}, err
	}
	if _, err := conn.ExecContext(ctx, lock); err != nil {
		conn.Close()
		return func() {}, err
	}
	return func() {
		conn.ExecContext(context.WithoutCancel(ctx), unlock)
		conn.Close()
	}, nil
}
