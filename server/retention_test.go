package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

// A long run of inserts and deletes: with retention the server database
// keeps only the live rows and what is recent; without, every tombstone,
// session and audit entry forever. The sizes are logged (docs/operations.md);
// the test checks what the sweep leaves.
func TestRetentionBoundsTheDatabase(t *testing.T) {
	const sessions, perSession = 100, 100
	size := func(retain bool) int64 {
		path := filepath.Join(t.TempDir(), "server.db")
		clock := testkit.NewClock()
		s, err := sqlitestore.Open(path, kindsSchema, sqlitestore.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f := storeFixture{t: t, s: s}
		f.device(ada, "d1")
		for i := range sessions {
			var rows []wire.Row
			for j := range perSession {
				rows = append(rows, parent(fmt.Sprintf("r%d-%d", i, j), "churn", "0000000000001.000000.d1"))
				if i > 0 { // the previous session's rows go
					gone := parent(fmt.Sprintf("r%d-%d", i-1, j), "churn", "0000000000001.000000.d1")
					gone.Deleted, gone.Base = true, int64(i)
					rows = append(rows, gone)
				}
			}
			f.push(ada, "d1", lww, rows)
		}
		if retain {
			clock.Advance(time.Hour) // past every retention below
			lim := server.Limits{DeviceActivity: time.Minute, SessionRetention: time.Minute, AuditRetention: time.Minute}
			for range 1000 {
				n, err := s.Sweep(context.Background(), lim, 1000)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
			}
			var tombstones, sess, audit int
			if err := s.DB().QueryRow(`SELECT (SELECT count(*) FROM parents WHERE _deleted), (SELECT count(*) FROM _tether_sessions),
				(SELECT count(*) FROM _tether_audit)`).Scan(&tombstones, &sess, &audit); err != nil {
				t.Fatal(err)
			}
			// The tombstones of the latest version stay: the horizon
			// never passes it.
			if tombstones != perSession || sess != 0 || audit != 0 {
				t.Errorf("after the sweep: %d tombstones, %d sessions, %d audit entries; want %d tombstones (the last session's) and nothing else",
					tombstones, sess, audit, perSession)
			}
		}
		var live int
		if err := s.DB().QueryRow(`SELECT count(*) FROM parents WHERE NOT _deleted`).Scan(&live); err != nil || live != perSession {
			t.Fatalf("%d live rows (%v), want %d", live, err, perSession)
		}
		for _, q := range []string{`VACUUM`, `PRAGMA wal_checkpoint(TRUNCATE)`} {
			if _, err := s.DB().Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	without, with := size(false), size(true)
	t.Logf("server database after %d sessions of %d inserts and %d deletes: %d KiB without retention, %d KiB with",
		sessions, perSession, perSession, without>>10, with>>10)
	if with >= without {
		t.Errorf("retention left %d bytes, no fewer than %d without", with, without)
	}
}
