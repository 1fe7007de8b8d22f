package stores

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/tethersync/tether/internal/dbserver"
)

// The environment variables that, set to 1, turn a skip for want of a
// database server's binaries into a failure.
const (
	RequirePostgresEnv = "TETHER_REQUIRE_POSTGRES"
	RequireMySQLEnv    = "TETHER_REQUIRE_MYSQL"
)

// dbServer is what a shared server needs of a dbserver.Server.
type dbServer interface {
	NewDatabase() (string, error)
	Stop()
}

// shared is one database server for a whole test binary.
type shared struct {
	name       string // in messages: "PostgreSQL", "MariaDB"
	requireEnv string
	start      func() (dbServer, error)

	mu      sync.Mutex
	started dbServer
	failed  error
}

func startKind(kind dbserver.Kind) func() (dbServer, error) {
	return func() (dbServer, error) {
		s, err := dbserver.Start(kind)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

var (
	postgres = &shared{name: "PostgreSQL", requireEnv: RequirePostgresEnv, start: startKind(dbserver.Postgres)}
	mariaDB  = &shared{name: "MariaDB", requireEnv: RequireMySQLEnv, start: startKind(dbserver.MariaDB)}
)

// database returns a new, empty database on the shared server, starting
// the server on first use. It skips t when the binaries are missing,
// unless requireEnv is 1, and fails it when the server cannot start.
func (s *shared) database(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started == nil && s.failed == nil {
		s.started, s.failed = s.start()
	}
	if s.failed != nil {
		if errors.Is(s.failed, dbserver.ErrNoBinaries) && os.Getenv(s.requireEnv) != "1" {
			t.Skipf("%v; install %s or set %s=1 to fail instead of skipping", s.failed, s.name, s.requireEnv)
		}
		t.Fatalf("%s: %v", s.name, s.failed)
	}
	db, err := s.started.NewDatabase()
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	return db
}

// stop stops the shared server, if it was started.
func (s *shared) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started != nil {
		s.started.Stop()
		s.started = nil
	}
}

// PostgresURL returns the URL of a new, empty database on the test
// binary's PostgreSQL server, starting the server on first use. It skips t
// (or fails it, under TETHER_REQUIRE_POSTGRES=1) when PostgreSQL is not
// installed. Safe for concurrent use.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return postgres.database(t)
}

// MySQLDSN returns the go-sql-driver/mysql DSN of a new, empty database on
// the test binary's MariaDB server, starting the server on first use. It
// skips t (or fails it, under TETHER_REQUIRE_MYSQL=1) when MariaDB is not
// installed. Safe for concurrent use.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	return mariaDB.database(t)
}

// Main runs the tests of a package and stops the database servers they
// started. Call it from TestMain: os.Exit(stores.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	postgres.stop()
	mariaDB.stop()
	return code
}
