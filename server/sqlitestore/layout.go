package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server/sqlstore"
)

// columnType implements the types of sqlstore.Column: SQLite's affinities.
func columnType(c sqlstore.Column) string {
	switch c.Type {
	case sqlstore.TypeInt, sqlstore.TypeBool:
		return "INTEGER"
	case sqlstore.TypeValue:
		return c.Value.Kind.SQLiteType()
	}
	return "TEXT" // times in entity.TimeFormat
}

// CreateTable implements sqlstore.Dialect.
func (dialect) CreateTable(t sqlstore.TableDef) []string {
	stmts := []string{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (%s, PRIMARY KEY (%s))`,
		sqlident.Quote(t.Name), sqlstore.ColumnDefs(t, columnType), sqlstore.ColumnList(t.Key))}
	for _, ix := range t.Indexes {
		stmts = append(stmts, sqlstore.CreateIndex(t.Name, ix, true))
	}
	return stmts
}

// AddColumn implements sqlstore.Dialect.
func (dialect) AddColumn(t sqlstore.TableDef, c sqlstore.Column) []string {
	if t.Synced && c.Value != nil { // the rows already there take the column's default
		c.Default = c.Value.Default()
	}
	return []string{fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s`, sqlident.Quote(t.Name), sqlstore.ColumnDef(c, columnType))}
}

// Columns implements sqlstore.Dialect.
func (dialect) Columns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	return sqlstore.Names(ctx, tx, `SELECT name FROM pragma_table_info(?)`, table)
}

// Indexes implements sqlstore.Dialect.
func (dialect) Indexes(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	return sqlstore.Names(ctx, tx, `SELECT name FROM pragma_index_list(?)`, table)
}

// LockMigrations implements sqlstore.Dialect: the single writer
// serializes migrations already.
func (dialect) LockMigrations(context.Context, *sql.DB) (func(), error) { return func() {}, nil }
