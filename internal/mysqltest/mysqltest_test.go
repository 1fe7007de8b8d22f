package mysqltest

import (
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestDatabasesAreNewAndEmpty(t *testing.T) {
	a, b := URL(t), DSN(t)
	if a == b {
		t.Fatalf("two calls gave the same DSN %q", a)
	}
	for _, dsn := range []string{a, b} {
		if !strings.HasPrefix(dsn, "root@tcp(127.0.0.1:") || !strings.Contains(dsn, "parseTime=true") {
			t.Errorf("DSN %q is not of the expected form", dsn)
		}
	}
	names := map[string]bool{}
	for _, dsn := range []string{a, b} {
		db := open(t, dsn)
		var name, charset string
		if err := db.QueryRowContext(t.Context(), "SELECT DATABASE(), @@character_set_database").Scan(&name, &charset); err != nil {
			t.Fatal(err)
		}
		if charset != "utf8mb4" {
			t.Errorf("database %s has character set %s, want utf8mb4", name, charset)
		}
		names[name] = true
		var n int
		if err := db.QueryRowContext(t.Context(),
			"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("new database %s has %d tables", name, n)
		}
	}
	if len(names) != 2 {
		t.Fatalf("the two DSNs name the same database: %v", names)
	}
	// A table in one is not in the other.
	if _, err := open(t, a).ExecContext(t.Context(), "CREATE TABLE only_in_a (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := open(t, b).QueryRowContext(t.Context(),
		"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a table created in one database shows in the other")
	}
}

func TestRoundTrip(t *testing.T) {
	db := open(t, URL(t))
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
	if got != body {
		t.Errorf("body = %q, want %q", got, body)
	}
	if !gotAt.Equal(at) {
		t.Errorf("at = %v, want %v", gotAt, at)
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

// TestStartStop starts a second server and checks that Stop ends its
// process and removes its directory.
func TestStartStop(t *testing.T) {
	begin := time.Now()
	s, err := Start()
	if errors.Is(err, ErrNoBinaries) && os.Getenv(RequireEnv) != "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %v", time.Since(begin))
	if _, err := s.NewDatabase(); err != nil {
		s.Stop()
		t.Fatal(err)
	}
	begin = time.Now()
	s.Stop()
	t.Logf("stopped in %v", time.Since(begin))
	// SIGTERM is a clean shutdown: the process has exited, with status 0,
	// well before Stop's 20 seconds were up and it would have been killed.
	if st := s.cmd.ProcessState; st == nil || !st.Success() {
		t.Errorf("server process after Stop: %v", st)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still exists after Stop (%v)", s.dir, err)
	}
}
