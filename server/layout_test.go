package server_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server/mysqlstore"
	"github.com/tethersync/tether/server/pgstore"
	"github.com/tethersync/tether/server/sqlitestore"
)

// layoutSchema has a reference, so that its index is created too.
var layoutSchema = entity.Schema{Tables: []entity.Table{
	{Name: "parents", Priority: 1, Columns: []entity.Column{
		{Name: "id", Kind: entity.KindText},
		{Name: "name", Kind: entity.KindText},
	}},
	{Name: "children", Priority: 2, Columns: []entity.Column{
		{Name: "id", Kind: entity.KindText},
		{Name: "parent_id", Kind: entity.KindText, Ref: "parents"},
	}},
}}

// tableLayout is a table as the database reports it: its columns (sorted),
// its primary key and its other indexes (name to columns, in order).
type tableLayout struct {
	Columns []string
	Key     []string
	Indexes map[string][]string
}

// TestLayoutAgreesAcrossStores checks that a fresh database of each kind
// has the same tables, columns, keys and indexes, in meaning: names and
// column lists, whatever each database calls the types.
func TestLayoutAgreesAcrossStores(t *testing.T) {
	sqlite, err := sqlitestore.Open(filepath.Join(t.TempDir(), "server.db"), layoutSchema, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sqlite.Close()
	want := readLayout(t, sqlite.DB(), sqliteLayout)
	checkSQLiteLayout(t, want)
	checkMigrations(t, sqlite.DB())

	t.Run("postgres", func(t *testing.T) {
		s, err := pgstore.Open(t.Context(), stores.PostgresURL(t), layoutSchema, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		compareLayouts(t, readLayout(t, s.DB(), postgresLayout), want)
		checkMigrations(t, s.DB())
	})
	t.Run("mysql", func(t *testing.T) {
		s, err := mysqlstore.Open(t.Context(), stores.MySQLDSN(t), layoutSchema, mysqlstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		compareLayouts(t, readLayout(t, s.DB(), mysqlLayout), want)
		checkMigrations(t, s.DB())
	})
}

// Opening a database again applies no migration step twice and keeps its
// layout.
func TestLayoutReopened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	var layouts []map[string]tableLayout
	for range 2 {
		s, err := sqlitestore.Open(path, layoutSchema, sqlitestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		layouts = append(layouts, readLayout(t, s.DB(), sqliteLayout))
		checkMigrations(t, s.DB())
		s.Close()
	}
	compareLayouts(t, layouts[1], layouts[0])
}

// checkSQLiteLayout checks a few facts of the reference layout, so that
// three databases cannot agree on a layout without the indexes the
// queries need.
func checkSQLiteLayout(t *testing.T, got map[string]tableLayout) {
	t.Helper()
	var names []string
	for name := range got {
		names = append(names, name)
	}
	slices.Sort(names)
	wantNames := []string{"_tether_audit", "_tether_batches", "_tether_captured", "_tether_counted", "_tether_devices", "_tether_horizons", "_tether_keys", "_tether_migrations",
		"_tether_schemas", "_tether_sessions", "_tether_settings", "_tether_stage_children", "_tether_stage_parents", "_tether_tenants", "children", "parents"}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("tables %q, want %q", names, wantNames)
	}
	for _, c := range []struct {
		table, index string
		cols         []string
	}{
		{"_tether_sessions", "_tether_sessions__open", []string{"tenant", "device", "user_name", "committed_at"}},
		{"_tether_sessions", "_tether_sessions__committed", []string{"committed_at"}},
		{"_tether_devices", "_tether_devices__user", []string{"tenant", "user_name"}},
		{"_tether_devices", "_tether_devices__seen", []string{"seen_at"}},
		{"_tether_stage_parents", "_tether_stage_parents__seq", []string{"_tenant", "_session", "_seq"}},
		{"parents", "parents__changes", []string{"_tenant", "_version", "id"}},
		{"_tether_keys", "_tether_keys__key", []string{"tenant", "tbl", "scope_key", "version", "id"}},
		{"children", "children__ref_parent_id", []string{"_tenant", "parent_id"}},
		{"_tether_counted", "_tether_counted__version", []string{"tenant", "version"}},
	} {
		if got := got[c.table].Indexes[c.index]; !slices.Equal(got, c.cols) {
			t.Errorf("index %s of %s: %q, want %q", c.index, c.table, got, c.cols)
		}
	}
	if got, want := got["_tether_stage_parents"].Key, []string{"_tenant", "_session", "id"}; !slices.Equal(got, want) {
		t.Errorf("key of the staging table %q, want %q", got, want)
	}
}

// checkMigrations checks that a fresh database recorded the migration
// steps it applied.
func checkMigrations(t *testing.T, db *sql.DB) {
	t.Helper()
	var n, top int
	if err := db.QueryRow(`SELECT count(*), coalesce(max(step), 0) FROM _tether_migrations`).Scan(&n, &top); err != nil || n == 0 || n != top {
		t.Errorf("_tether_migrations: %d steps up to %d (%v); want steps 1 to n", n, top, err)
	}
}

// compareLayouts reports each table whose layout differs from want's.
func compareLayouts(t *testing.T, got, want map[string]tableLayout) {
	t.Helper()
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("table %s missing", name)
		} else if !reflect.DeepEqual(g, w) {
			t.Errorf("table %s:\n got %+v\nwant %+v", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("table %s, which SQLite lacks", name)
		}
	}
}

// introspection is the queries that read one database's layout, each of
// one parameter (the table) but tables'.
type introspection struct {
	tables  string // name
	columns string // name
	key     string // column, in key order
	indexes string // index, column, in index order; the key excluded
	// staged adjusts a staging table that keeps every copy of a row.
	staged func(*tableLayout)
}

var sqliteLayout = introspection{
	tables:  `SELECT name FROM sqlite_master WHERE type = 'table'`,
	columns: `SELECT name FROM pragma_table_info(?)`,
	key:     `SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk`,
	indexes: `SELECT l.name, i.name FROM pragma_index_list(?) AS l, pragma_index_info(l.name) AS i
		WHERE l.origin = 'c' ORDER BY l.name, i.seqno`,
}

var postgresLayout = introspection{
	tables:  `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`,
	columns: `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`,
	key: `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`,
	indexes: `SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1::regclass AND NOT i.indisprimary ORDER BY c.relname, array_position(i.indkey::int2[], a.attnum)`,
	// COPY stages every copy of a row: the key is a plain index on the
	// key's columns and "_seq".
	staged: func(l *tableLayout) {
		for name, cols := range l.Indexes {
			if strings.HasSuffix(name, "__key") && len(l.Key) == 0 && cols[len(cols)-1] == "_seq" {
				l.Key = cols[:len(cols)-1]
				delete(l.Indexes, name)
			}
		}
	},
}

var mysqlLayout = introspection{
	tables:  `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`,
	columns: `SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?`,
	key: `SELECT column_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ?
		AND index_name = 'PRIMARY' ORDER BY seq_in_index`,
	indexes: `SELECT index_name, column_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ?
		AND index_name <> 'PRIMARY' ORDER BY index_name, seq_in_index`,
}

// readLayout reads the layout of every table of db.
func readLayout(t *testing.T, db *sql.DB, in introspection) map[string]tableLayout {
	t.Helper()
	ctx := t.Context()
	tables, err := column(ctx, db, in.tables)
	if err != nil {
		t.Fatalf("tables: %v", err)
	}
	out := map[string]tableLayout{}
	for _, name := range tables {
		l, err := readTable(ctx, db, in, name)
		if err != nil {
			t.Fatalf("table %s: %v", name, err)
		}
		out[name] = l
	}
	return out
}

func readTable(ctx context.Context, db *sql.DB, in introspection, name string) (tableLayout, error) {
	var l tableLayout
	var err error
	if l.Columns, err = column(ctx, db, in.columns, name); err != nil {
		return l, fmt.Errorf("columns: %w", err)
	}
	slices.Sort(l.Columns)
	if l.Key, err = column(ctx, db, in.key, name); err != nil {
		return l, fmt.Errorf("key: %w", err)
	}
	rows, err := db.QueryContext(ctx, in.indexes, name)
	if err != nil {
		return l, fmt.Errorf("indexes: %w", err)
	}
	defer rows.Close()
	l.Indexes = map[string][]string{}
	for rows.Next() {
		var index, col string
		if err := rows.Scan(&index, &col); err != nil {
			return l, err
		}
		l.Indexes[index] = append(l.Indexes[index], col)
	}
	if in.staged != nil && strings.HasPrefix(name, "_tether_stage_") {
		in.staged(&l)
	}
	return l, rows.Err()
}

// column runs a query of one text column.
func column(ctx context.Context, db *sql.DB, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// The queries that run for every push and at every sweep seek an index on
// SQLite instead of reading every session of every tenant (kept for
// SessionRetention).
func TestSessionQueriesUseIndexes(t *testing.T) {
	s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "server.db"), layoutSchema, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range []string{
		`SELECT count(*) FROM _tether_sessions WHERE tenant = 'a' AND device = 'd' AND user_name = 'u' AND committed_at IS NULL`,
		`SELECT tenant, id FROM _tether_sessions WHERE committed_at IS NULL AND coalesce(touched_at, created_at) < '2026' LIMIT 10`,
		`SELECT tenant, id FROM _tether_sessions WHERE committed_at IS NOT NULL AND committed_at < '2026' LIMIT 10`,
	} {
		rows, err := s.DB().QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q)
		if err != nil {
			t.Fatal(err)
		}
		var details []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			details = append(details, detail)
		}
		rows.Close()
		if got := strings.Join(details, "; "); !strings.Contains(got, "USING") || !strings.Contains(got, "INDEX") {
			t.Errorf("plan of %s: %s; want an index", q, got)
		}
	}
}
