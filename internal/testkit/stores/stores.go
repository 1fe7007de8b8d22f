package stores

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/mysqlstore"
	"github.com/tethersync/tether/server/pgstore"
	"github.com/tethersync/tether/server/sqlitestore"
)

// The kinds of store.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
	MySQL    = "mysql"
)

var (
	// All are the kinds of store, SQLite first.
	All = []string{SQLite, Postgres, MySQL}
	// Shared are the kinds of store that several server processes can
	// share a database of.
	Shared = []string{Postgres, MySQL}
)

// Options are the options of the stores Open opens, whatever their kind.
type Options struct {
	// Now is the stores' clock; default time.Now.
	Now func() time.Time
}

// Database is a new, empty database of one kind of store, on which tests
// open stores (several at once for the kinds in Shared).
type Database struct {
	Kind string // SQLite, Postgres or MySQL
	// DSN reaches the database: the SQLite file's path, a postgres:// URL,
	// or a go-sql-driver/mysql DSN.
	DSN string
}

// NewDatabase returns a new, empty database of kind: a file in t's
// temporary directory, or a database on the test binary's PostgreSQL or
// MariaDB server, which skips t (or fails it, when required) if that
// server is not installed.
func NewDatabase(t testing.TB, kind string) Database {
	t.Helper()
	switch kind {
	case SQLite:
		return Database{Kind: kind, DSN: filepath.Join(t.TempDir(), "server.db")}
	case Postgres:
		return Database{Kind: kind, DSN: PostgresURL(t)}
	case MySQL:
		return Database{Kind: kind, DSN: MySQLDSN(t)}
	}
	t.Fatalf("stores: unknown kind %q", kind)
	return Database{}
}

// Open opens a store of the database's kind on it, for schema, and closes
// it when t ends. It fails t on error.
func (db Database) Open(t testing.TB, schema entity.Schema, o Options) server.Store {
	t.Helper()
	var s server.Store
	var err error
	switch db.Kind {
	case SQLite:
		s, err = sqlitestore.Open(db.DSN, schema, sqlitestore.Options{Now: o.Now})
	case Postgres:
		s, err = pgstore.Open(t.Context(), db.DSN, schema, pgstore.Options{Now: o.Now})
	case MySQL:
		s, err = mysqlstore.Open(t.Context(), db.DSN, schema, mysqlstore.Options{Now: o.Now})
	default:
		t.Fatalf("stores: unknown kind %q", db.Kind)
	}
	if err != nil {
		t.Fatalf("open a %s store: %v", db.Kind, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Open opens a store of kind on a new database, for schema, and closes it
// when t ends: NewDatabase(t, kind).Open(t, schema, o).
func Open(t testing.TB, kind string, schema entity.Schema, o Options) server.Store {
	t.Helper()
	return NewDatabase(t, kind).Open(t, schema, o)
}

// Each runs f as a subtest named by the kind, for each kind of store in
// kinds (All or Shared), with a new, empty database of that kind.
func Each(t *testing.T, kinds []string, f func(t *testing.T, db Database)) {
	t.Helper()
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) { f(t, NewDatabase(t, kind)) })
	}
}
