package localdb_test

import (
	"strings"
	"testing"

	"github.com/tethersync/tether/localdb"
)

// MarkFinal records a last batch as MarkSent does and, in the same
// transaction, takes a new attempt number: the numbers of NextAttempt and
// MarkFinal together only grow, across a reopen too. A batch not recorded
// as the last is refused, and changes nothing.
func TestMarkFinalTakesAnAttempt(t *testing.T) {
	path := t.TempDir() + "/app.db"
	db := open(t, path)
	s := db.Syncer()
	saveNote(t, db, "n1", "a")
	a1, err := s.NextAttempt(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.NextDirty(ctx, localdb.PushPos{}, 10)
	if err != nil || len(b.Rows) != 1 {
		t.Fatalf("NextDirty: %d rows, %v", len(b.Rows), err)
	}
	st := localdb.PushState{Session: "s1"}
	if _, err := s.MarkFinal(ctx, b, st); err == nil || !strings.Contains(err.Error(), "Final") {
		t.Fatalf("MarkFinal of a batch not the last: %v, want an error naming PushState.Final", err)
	}
	if got, err := s.PushState(ctx); err != nil || got.Session != "" {
		t.Fatalf("after a refused MarkFinal: %+v, %v; want no session", got, err)
	}
	st.Final, st.FinalDigest = true, strings.Repeat("ab", 32)
	a2, err := s.MarkFinal(ctx, b, st)
	if err != nil {
		t.Fatal(err)
	}
	if a2 <= a1 {
		t.Errorf("MarkFinal's attempt %d after NextAttempt's %d, want larger", a2, a1)
	}
	if got, err := s.PushState(ctx); err != nil || got != st {
		t.Errorf("push state %+v (%v), want %+v", got, err, st)
	}
	db.Close()
	s = open(t, path).Syncer()
	a3, err := s.NextAttempt(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a3 <= a2 {
		t.Errorf("NextAttempt after a reopen: %d, want more than MarkFinal's %d", a3, a2)
	}
}
