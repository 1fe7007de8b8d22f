package dbserver

import (
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// start starts a server of kind for t, stopped at its end; it skips t
// without binaries unless the environment requires the server (as
// internal/testkit/stores does).
func start(t *testing.T, kind Kind) *Server {
	t.Helper()
	env := map[Kind]string{Postgres: "TETHER_REQUIRE_POSTGRES", MariaDB: "TETHER_REQUIRE_MYSQL"}[kind]
	begin := time.Now()
	s, err := Start(kind)
	if errors.Is(err, ErrNoBinaries) && os.Getenv(env) != "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %v", time.Since(begin))
	t.Cleanup(s.Stop)
	return s
}

func open(t *testing.T, kind Kind, dsn string) *sql.DB {
	t.Helper()
	driver := map[Kind]string{Postgres: "pgx", MariaDB: "mysql"}[kind]
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db
}

// A server of each kind makes new, empty databases, keeps what is written
// to them, and stops cleanly.
func TestServer(t *testing.T) {
	for _, kind := range []Kind{Postgres, MariaDB} {
		t.Run(string(kind), func(t *testing.T) {
			s := start(t, kind)
			newAndEmpty(t, s)
			if kind == MariaDB {
				mariaDBRoundTrip(t, s)
			}
			stop(t, s)
		})
	}
}

// Each database is new and empty, of its own, and (MariaDB) in utf8mb4.
func newAndEmpty(t *testing.T, s *Server) {
	kind := s.Kind()
	var dsns []string
	for range 2 {
		dsn, err := s.NewDatabase()
		if err != nil {
			t.Fatal(err)
		}
		dsns = append(dsns, dsn)
	}
	a, b := dsns[0], dsns[1]
	if a == b {
		t.Fatalf("two calls gave the same DSN %q", a)
	}
	prefix := map[Kind]string{Postgres: "postgres://tether@127.0.0.1:", MariaDB: "root@tcp(127.0.0.1:"}[kind]
	for _, dsn := range dsns {
		if !strings.HasPrefix(dsn, prefix) {
			t.Errorf("DSN %q does not start with %q", dsn, prefix)
		}
	}
	count := `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()`
	if kind == Postgres {
		count = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'`
	} else {
		var charset string
		if err := open(t, kind, a).QueryRowContext(t.Context(), "SELECT @@character_set_database").Scan(&charset); err != nil {
			t.Fatal(err)
		}
		if charset != "utf8mb4" {
			t.Errorf("character set %s, want utf8mb4", charset)
		}
	}
	var n int
	if err := open(t, kind, b).QueryRowContext(t.Context(), count).Scan(&n); err != nil || n != 0 {
		t.Fatalf("a new database has %d tables (%v)", n, err)
	}
	// A table in one is not in the other.
	if _, err := open(t, kind, a).ExecContext(t.Context(), "CREATE TABLE only_in_a (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if err := open(t, kind, b).QueryRowContext(t.Context(), count).Scan(&n); err != nil || n != 0 {
		t.Errorf("a table created in one database shows in the other (%d tables, %v)", n, err)
	}
}

// MariaDB keeps four-byte characters and microseconds.
func mariaDBRoundTrip(t *testing.T, s *Server) {
	dsn, err := s.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	db := open(t, MariaDB, dsn)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, `CREATE TABLE notes (
		id BIGINT PRIMARY KEY,
		body VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
		at DATETIME(6) NOT NULL
	)`); err != nil {
		t.Fatal(err)
	}
	const body = "tether 🪢 naïve 日本 \U0001F600"
	at := time.Date(2024, 2, 29, 12, 34, 56, 123456000, time.UTC)
	if _, err := db.ExecContext(ctx, "INSERT INTO notes (id, body, at) VALUES (?, ?, ?)", 1, body, at); err != nil {
		t.Fatal(err)
	}
	var got string
	var gotAt time.Time
	if err := db.QueryRowContext(ctx, "SELECT body, at FROM notes WHERE id = ?", 1).Scan(&got, &gotAt); err != nil {
		t.Fatal(err)
	}
	if got != body || !gotAt.Equal(at) {
		t.Errorf("read %q at %v, want %q at %v", got, gotAt, body, at)
	}
	// The emoji is found by an exact comparison, and is four bytes.
	var n, length int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*), MAX(LENGTH(body)) FROM notes WHERE body = ?", body).Scan(&n, &length); err != nil {
		t.Fatal(err)
	}
	if n != 1 || length != len(body) {
		t.Errorf("count = %d, byte length = %d; want 1, %d", n, length, len(body))
	}
}

// Stop ends the process cleanly and removes the directory.
func stop(t *testing.T, s *Server) {
	begin := time.Now()
	s.Stop()
	t.Logf("stopped in %v", time.Since(begin))
	// A clean shutdown: the process has exited with status 0, well
	// before Stop's 20 seconds were up and it would have been killed.
	if st := s.cmd.ProcessState; st == nil || !st.Success() {
		t.Errorf("server process after Stop: %v", st)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still exists after Stop (%v)", s.dir, err)
	}
}

func TestUnknownKind(t *testing.T) {
	if _, err := Start("oracle"); err == nil {
		t.Error("Start(oracle) succeeded")
	}
}
