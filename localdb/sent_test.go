package localdb_test

import (
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// noteState is what a test checks of a row after a push.
type noteState struct {
	title   string
	dirty   bool
	version int64
}

func noteAt(t *testing.T, db *localdb.DB, id string) noteState {
	t.Helper()
	var n Note
	if err := db.Get(ctx, &n, id); err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return noteState{n.Title, n.Dirty, n.Version}
}

func wantNotes(t *testing.T, db *localdb.DB, want map[string]noteState) {
	t.Helper()
	for id, w := range want {
		if got := noteAt(t, db, id); got != w {
			t.Errorf("%s: %+v, want %+v", id, got, w)
		}
	}
}

// saveNote saves a note with the given id and title.
func saveNote(t *testing.T, db *localdb.DB, id, title string) {
	t.Helper()
	if err := db.Save(ctx, &Note{ID: id, Title: title}); err != nil {
		t.Fatal(err)
	}
}

// pushed marks every row clean, as a finished push would (at version 0).
func pushed(t *testing.T, db *localdb.DB) {
	t.Helper()
	if err := db.Syncer().FinishPushForTest(ctx); err != nil {
		t.Fatal(err)
	}
}

// sendBatch reads the batch at st.Pos and records it as acknowledged,
// advancing st.
func sendBatch(t *testing.T, s *localdb.Syncer, st *localdb.PushState, limit int) localdb.DirtyBatch {
	t.Helper()
	b, err := s.NextDirty(ctx, st.Pos, limit)
	if err != nil {
		t.Fatal(err)
	}
	st.Seq++
	st.Pos = b.Next
	if err := s.MarkSent(ctx, b, *st); err != nil {
		t.Fatal(err)
	}
	return b
}

// G2: the rows of an acknowledged batch are clean at the commit only if
// unchanged since they were read. A row edited between the batch's
// acknowledgement and the commit (by Save, by plain SQL, by a delete)
// stays dirty with its edit, based on the committed version. A row that
// was not in the batch, though its id lies between the batch's first and
// last (clean when the batch was read, or written since), stays as it
// is: dirty with its edit, at its own version.
func TestFinishPushKeepsEditsAfterAcknowledgement(t *testing.T) {
	db := newDB(t)
	s := db.Syncer()
	saveNote(t, db, "n2", "clean before")
	pushed(t, db)
	for _, id := range []string{"n1", "n3", "n5", "n7", "n9"} {
		saveNote(t, db, id, id)
	}
	if err := s.BeginPush(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	st := localdb.PushState{Session: "s1"}
	b := sendBatch(t, s, &st, 10)
	if got := len(b.Rows); got != 5 {
		t.Fatalf("batch of %d rows, want 5", got)
	}
	saveNote(t, db, "n3", "n3 saved after")
	if _, err := db.SQL().Exec(`UPDATE notes SET title = 'n5 raw SQL after' WHERE id = 'n5'`); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(ctx, &Note{ID: "n7"}); err != nil {
		t.Fatal(err)
	}
	saveNote(t, db, "n2", "clean before, edited after")
	saveNote(t, db, "n4", "new after")
	if err := s.FinishPush(ctx, wire.Commit{Version: 7}, true); err != nil {
		t.Fatal(err)
	}
	wantNotes(t, db, map[string]noteState{
		"n1": {"n1", false, 7},
		"n9": {"n9", false, 7},
		"n3": {"n3 saved after", true, 7},
		"n5": {"n5 raw SQL after", true, 7},
		"n2": {"clean before, edited after", true, 0},
		"n4": {"new after", true, 0},
	})
	var dirty, deleted, version int
	if err := db.SQL().QueryRow(`SELECT "_dirty", "_deleted", "_version" FROM notes WHERE id = 'n7'`).Scan(&dirty, &deleted, &version); err != nil {
		t.Fatal(err)
	}
	if dirty != 1 || deleted != 1 || version != 7 {
		t.Errorf("n7 deleted after its batch: dirty=%d deleted=%d version=%d, want a dirty tombstone at 7", dirty, deleted, version)
	}
	if n := pending(t, db); n != 5 {
		t.Errorf("Pending=%d, want 5", n)
	}
}

// A row read again in a later batch of the same session (the batch was
// read again, or sent again under another number) is clean at the commit
// only if unchanged since its last read.
func TestFinishPushRowReadAgain(t *testing.T) {
	db := newDB(t)
	s := db.Syncer()
	for _, id := range []string{"a", "b", "c"} {
		saveNote(t, db, id, id)
	}
	if err := s.BeginPush(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	st := localdb.PushState{Session: "s1"}
	sendBatch(t, s, &st, 10) // batch 0: a, b, c
	saveNote(t, db, "a", "a edited, then read again")
	saveNote(t, db, "b", "b edited, then read again")
	st.Pos = localdb.PushPos{}
	if b := sendBatch(t, s, &st, 10); len(b.Rows) != 3 { // batch 1: a, b, c again
		t.Fatalf("second read: %d rows, want 3", len(b.Rows))
	}
	saveNote(t, db, "b", "b edited after its last read")
	if err := s.FinishPush(ctx, wire.Commit{Version: 3}, true); err != nil {
		t.Fatal(err)
	}
	wantNotes(t, db, map[string]noteState{
		"a": {"a edited, then read again", false, 3},
		"b": {"b edited after its last read", true, 3},
		"c": {"c", false, 3},
	})
}

// The rows of a last batch recorded as sent with the commit and then
// forgotten (ForgetFinal: the server did not commit it) stay dirty at
// their own version when the session is committed without it; the rows
// of the batches acknowledged before are clean.
func TestFinishPushAfterForgetFinal(t *testing.T) {
	db := newDB(t)
	s := db.Syncer()
	for _, id := range []string{"a", "b", "c", "d"} {
		saveNote(t, db, id, id)
	}
	if err := s.BeginPush(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	st := localdb.PushState{Session: "s1"}
	sendBatch(t, s, &st, 2) // a, b
	final, err := s.NextDirty(ctx, st.Pos, 2)
	if err != nil || len(final.Rows) != 2 {
		t.Fatalf("NextDirty: %d rows, %v", len(final.Rows), err)
	}
	fin := st
	fin.Final, fin.FinalDigest = true, "d1"
	if err := s.MarkSent(ctx, final, fin); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetFinal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishPush(ctx, wire.Commit{Version: 4}, false); err != nil {
		t.Fatal(err)
	}
	wantNotes(t, db, map[string]noteState{
		"a": {"a", false, 4},
		"b": {"b", false, 4},
		"c": {"c", true, 0},
		"d": {"d", true, 0},
	})
}

// A push whose database is closed and opened again between any two of
// its steps ends with every row clean, once, at the commit's version, and
// the rows edited during it dirty.
func TestPushStepsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	ids := []string{"a", "b", "c", "d", "e", "f", "g"}
	for _, id := range ids {
		saveNote(t, db, id, id)
	}
	reopen := func() {
		t.Helper()
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db = open(t, path)
	}
	if err := db.Syncer().BeginPush(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	reopen()
	for i := 0; ; i++ {
		st, err := db.Syncer().PushState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.Syncer().NextDirty(ctx, st.Pos, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Rows) == 0 {
			break
		}
		if i == 1 {
			saveNote(t, db, "c", "c edited, then read again")
		}
		reopen() // read, the answer to its batch lost: read again
		if b, err = db.Syncer().NextDirty(ctx, st.Pos, 2); err != nil {
			t.Fatal(err)
		}
		st.Seq++
		st.Pos = b.Next
		if err := db.Syncer().MarkSent(ctx, b, st); err != nil {
			t.Fatal(err)
		}
		reopen()
		if i == 2 {
			saveNote(t, db, "a", "a edited before the commit")
		}
	}
	reopen()
	if err := db.Syncer().FinishPush(ctx, wire.Commit{Version: 9}, true); err != nil {
		t.Fatal(err)
	}
	reopen()
	want := map[string]noteState{}
	for _, id := range ids {
		want[id] = noteState{id, false, 9}
	}
	want["a"] = noteState{"a edited before the commit", true, 9}
	want["c"] = noteState{"c edited, then read again", false, 9}
	wantNotes(t, db, want)
	if n := pending(t, db); n != 1 {
		t.Errorf("Pending=%d, want 1 (a)", n)
	}
}

// A row of an acknowledged batch removed from the device (evicted: its
// principal may no longer see it), then pulled again and edited before the
// commit, is not one the session sent: its edit stays dirty, based on the
// version it came back at.
func TestFinishPushRowEvictedAndBack(t *testing.T) {
	db := newDB(t)
	s := db.Syncer()
	saveNote(t, db, "a", "a")
	saveNote(t, db, "b", "b")
	if err := s.BeginPush(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	st := localdb.PushState{Session: "s1"}
	sendBatch(t, s, &st, 10)
	if _, err := s.ApplyChanges(ctx, []wire.Row{{Table: "notes", ID: "a", Evict: true}}, "c1"); err != nil {
		t.Fatal(err)
	}
	back := wire.Row{Table: "notes", ID: "a", Version: 5, HLC: "0001700000000.000000.server-device",
		Values: map[string]any{"title": "a as it came back", "body": nil, "at": "2026-11-23T08:00:00.000000000Z"}}
	if _, err := s.ApplyChanges(ctx, []wire.Row{back}, "c2"); err != nil {
		t.Fatal(err)
	}
	wantNotes(t, db, map[string]noteState{"a": {"a as it came back", false, 5}})
	saveNote(t, db, "a", "a edited after it came back")
	if err := s.FinishPush(ctx, wire.Commit{Version: 7}, true); err != nil {
		t.Fatal(err)
	}
	wantNotes(t, db, map[string]noteState{
		"a": {"a edited after it came back", true, 5},
		"b": {"b", false, 7},
	})
}
