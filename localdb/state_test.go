package localdb_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
)

// A stored state that does not parse is an error naming the state and the
// database, not a zero value.
func TestBadStoredState(t *testing.T) {
	for _, tc := range []struct {
		name, sql, state string
		read             func(db *localdb.DB) error
	}{
		{"push seq", `INSERT INTO _tether_state VALUES ('push_session', 's1'), ('push_seq', 'x'), ('push_pos', '0:')`, "push_seq",
			func(db *localdb.DB) error { _, err := db.Syncer().PushState(ctx); return err }},
		{"push pos", `INSERT INTO _tether_state VALUES ('push_session', 's1'), ('push_seq', '1'), ('push_pos', '0')`, "push_pos",
			func(db *localdb.DB) error { _, err := db.Syncer().PushState(ctx); return err }},
		{"push attempt", `INSERT INTO _tether_state VALUES ('push_attempt', '1e3')`, "push_attempt",
			func(db *localdb.DB) error { _, err := db.Syncer().NextAttempt(ctx); return err }},
		{"clock", `UPDATE _tether_state SET value = 'noon' WHERE key = 'clock'`, "clock", reopen},
		{"refill", `INSERT INTO _tether_state VALUES ('refill', 'all')`, "refill", reopen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.db")
			db := open(t, path)
			if err := db.Save(ctx, &Note{Title: "a"}); err != nil { // stores the clock
				t.Fatal(err)
			}
			if _, err := db.SQL().Exec(tc.sql); err != nil {
				t.Fatal(err)
			}
			err := tc.read(db)
			if err == nil || !strings.Contains(err.Error(), tc.state) || !strings.Contains(err.Error(), path) {
				t.Errorf("got %v, want an error naming %s and %s", err, tc.state, path)
			}
		})
	}
}

// reopen opens the database of db again, after closing it.
func reopen(db *localdb.DB) error {
	var path string
	if err := db.SQL().QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path); err != nil {
		return err
	}
	db.Close()
	reg := entity.NewRegistry()
	if err := reg.Register(Note{}); err != nil {
		return err
	}
	db2, err := localdb.Open(ctx, path, reg)
	if err == nil {
		db2.Close()
	}
	return err
}
