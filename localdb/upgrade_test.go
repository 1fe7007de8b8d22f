package localdb_test

import (
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// Item and Note2 are the types of the files testdata/push-acked.db and
// testdata/push-final.db, made by tether before _tether_sent (layout 1,
// commit 0bdd293) with the program below: an item with a counter (its
// increment of 5 read with it) and notes n1 to n6, all dirty; a push
// session s-old with batch 0 (i1) and batch 1 (n1, n2) acknowledged, the
// rows recorded one by one in _tether_push. push-final.db also has batch 2
// (n3, n4) recorded as sent with the commit (PushState.Final), answer
// unknown.
//
//	db.Save(&Item{ID: "i1", Name: "bolt", Stock: 5}); db.Save(&Note2{ID: "n1".."n6"})
//	BeginPush("s-old"); twice: NextDirty(st.Pos, 2), st.Seq++, st.Pos = b.Next, MarkSent(b, st)
//	copy to push-acked.db; NextDirty(st.Pos, 2), MarkSent(b, st with Final) and copy to push-final.db
type Item struct {
	entity.Meta `sync:"items,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Stock       int    `db:"stock,counter"`
}

type Note2 struct {
	entity.Meta `sync:"notes,2"`
	ID          string  `db:"id"`
	Title       string  `db:"title"`
	Body        *string `db:"body"`
}

// openFixture opens a copy of testdata/name with the current layout.
func openFixture(t *testing.T, name string) *localdb.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := copyFile(filepath.Join("testdata", name), path); err != nil {
		t.Fatal(err)
	}
	return open(t, path, Item{}, Note2{})
}

// wantRows checks the dirty flag and version of rows of table, by id.
func wantRows(t *testing.T, db *localdb.DB, table string, want map[string][2]int64) {
	t.Helper()
	for id, w := range want {
		var dirty, version int64
		if err := db.SQL().QueryRow(`SELECT "_dirty", "_version" FROM `+table+` WHERE id = ?`, id).Scan(&dirty, &version); err != nil {
			t.Fatalf("%s %s: %v", table, id, err)
		}
		if got := [2]int64{dirty, version}; got != w {
			t.Errorf("%s %s: dirty, version=%v, want %v", table, id, got, w)
		}
	}
}

func count(t *testing.T, db *localdb.DB, query string) int {
	t.Helper()
	var n int
	if err := db.SQL().QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// A push under way in a database made before _tether_sent goes on after
// the upgrade and finishes with the rows of both records: those recorded
// one by one before it and those of the batches after it.
func TestUpgradeDuringPush(t *testing.T) {
	db := openFixture(t, "push-acked.db")
	s := db.Syncer()
	st, err := s.PushState(ctx)
	if err != nil || st.Session != "s-old" || st.Seq != 2 || st.Pos.After != "n2" {
		t.Fatalf("PushState after the upgrade=%+v, %v; want s-old after batch 1, n2", st, err)
	}
	if got := count(t, db, `SELECT count(*) FROM _tether_push`); got != 3 {
		t.Fatalf("%d rows in _tether_push, want the 3 recorded before the upgrade", got)
	}
	if err := db.Save(ctx, &Note2{ID: "n1", Title: "n1 edited after the upgrade"}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // n3, n4 and n5, n6
		b, err := s.NextDirty(ctx, st.Pos, 2)
		if err != nil || len(b.Rows) != 2 {
			t.Fatalf("NextDirty: %d rows, %v", len(b.Rows), err)
		}
		st.Seq++
		st.Pos = b.Next
		if err := s.MarkSent(ctx, b, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.FinishPush(ctx, wire.Commit{Version: 9}, true); err != nil {
		t.Fatal(err)
	}
	wantRows(t, db, "items", map[string][2]int64{"i1": {0, 9}})
	wantRows(t, db, "notes", map[string][2]int64{"n1": {1, 9}, "n2": {0, 9}, "n3": {0, 9}, "n4": {0, 9}, "n5": {0, 9}, "n6": {0, 9}})
	if got := count(t, db, `SELECT count(*) FROM _tether_increments`); got != 0 {
		t.Errorf("%d increments left, want 0 (i1's was acknowledged)", got)
	}
	if got := count(t, db, `SELECT (SELECT count(*) FROM _tether_push) + (SELECT count(*) FROM _tether_sent)`); got != 0 {
		t.Errorf("%d rows left in _tether_push and _tether_sent, want 0", got)
	}
}

// A last batch recorded as sent with the commit before the upgrade is in
// when the server committed it, and stays dirty when not (ForgetFinal).
func TestUpgradeWithFinalBatch(t *testing.T) {
	for _, settled := range []bool{true, false} {
		t.Run(map[bool]string{true: "committed", false: "not committed"}[settled], func(t *testing.T) {
			db := openFixture(t, "push-final.db")
			s := db.Syncer()
			st, err := s.PushState(ctx)
			if err != nil || !st.Final || st.Seq != 2 {
				t.Fatalf("PushState after the upgrade=%+v, %v; want batch 2 final", st, err)
			}
			final := int64(0)
			if settled {
				final = 1
			} else if err := s.ForgetFinal(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.FinishPush(ctx, wire.Commit{Version: 5}, false); err != nil {
				t.Fatal(err)
			}
			in := func(b int64) [2]int64 { return [2]int64{1 - b, 5 * b} }
			wantRows(t, db, "items", map[string][2]int64{"i1": in(1)})
			wantRows(t, db, "notes", map[string][2]int64{"n1": in(1), "n2": in(1), "n3": in(final), "n4": in(final),
				"n5": in(0), "n6": in(0)})
		})
	}
}
