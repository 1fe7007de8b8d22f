package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// runFixture pushes batches of one session of ada's device d1 as runs of
// sends would: each batch numbered by its run (attempt) and the run's base.
type runFixture struct {
	storeFixture
	session string
}

func newRunFixture(t *testing.T, db stores.Database) runFixture {
	clock := testkit.NewClock()
	f := runFixture{storeFixture{t: t, s: stores.Open(t, db.Kind, kindsSchema, stores.Options{Now: clock.Now}), clock: clock}, "s-runs"}
	f.device(ada, "d1")
	return f
}

// send sends batch seq of run attempt, whose base is base, holding one
// parent row per name; with last it commits the session.
func (f runFixture) send(attempt int64, base, seq int, last bool, names ...string) (*wire.Commit, error) {
	var rows []wire.Row
	for _, n := range names {
		id, _, _ := strings.Cut(n, "@")
		rows = append(rows, parent(id, n, "0000000000001.000000.d1"))
	}
	o := server.PushOptions{Open: seq == 0, Attempt: attempt, Base: base, Resolve: lww}
	if last {
		o.Commit = &server.LastBatch{Seq: seq, Digest: strings.Repeat("a", 64)}
	}
	return f.s.Push(context.Background(), ada, "d1", f.session, seq, rows, o)
}

// must sends as send does, and fails the test on an error.
func (f runFixture) must(attempt int64, base, seq int, last bool, names ...string) *wire.Commit {
	f.t.Helper()
	c, err := f.send(attempt, base, seq, last, names...)
	if err != nil {
		f.t.Fatalf("batch %d of run %d: %v", seq, attempt, err)
	}
	return c
}

// committed returns the names of the parents on the server, by id.
func (f runFixture) committed() map[string]string { return names(f.all(ada, 100)) }

// A delayed copy of an earlier run's batch, arriving once a newer run has
// staged a batch, is refused and changes nothing: neither the newer run's
// copy of its number, nor a number the newer run has not sent yet, nor
// (for the first batch of the earlier run) the batches after it.
func TestRunsRefuseAnEarlierRunsBatch(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		f := newRunFixture(t, db)
		f.must(1, 0, 0, false, "a@1")
		f.must(1, 0, 1, false, "b@1")
		f.must(1, 0, 2, false, "c@1") // its answer is lost: the device holds 0 and 1
		f.must(2, 2, 2, false, "c@2")
		for _, late := range []struct {
			seq  int
			name string
		}{{2, "c@1 late"}, {3, "d@1 late"}, {0, "a@1 late"}} {
			if _, err := f.send(1, 0, late.seq, false, late.name); !errors.Is(err, wire.ErrConflict) {
				t.Errorf("batch %d of run 1 after run 2 began: %v, want ErrConflict", late.seq, err)
			}
		}
		c := f.must(2, 2, 3, true, "e@2")
		if c == nil || c.Applied != 4 {
			t.Fatalf("commit: %+v, want 4 rows applied", c)
		}
		got := f.committed()
		want := map[string]string{"a": "a@1", "b": "b@1", "c": "c@2", "e": "e@2"}
		if len(got) != len(want) {
			t.Errorf("committed %v, want %v", got, want)
		}
		for id, name := range want {
			if got[id] != name {
				t.Errorf("committed %v, want %v", got, want)
				break
			}
		}
	})
}

// A session whose batch 1 was lost while batch 2 was staged is not
// committed without it: the commit names the missing batch, and succeeds
// once it is staged.
func TestRunsRefuseACommitWithAHole(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		f := newRunFixture(t, db)
		ctx := context.Background()
		f.must(1, 0, 0, false, "a@1")
		f.must(1, 0, 2, false, "c@1") // batch 1 never arrived
		_, err := f.s.Commit(ctx, ada, "d1", f.session, lww, server.Limits{}, nil)
		if !errors.Is(err, wire.ErrConflict) || !strings.Contains(err.Error(), "batch 1") {
			t.Errorf("commit with batch 1 missing: %v, want ErrConflict naming batch 1", err)
		}
		if _, err := f.send(1, 0, 3, true, "d@1"); !errors.Is(err, wire.ErrConflict) || !strings.Contains(err.Error(), "batch 1") {
			t.Errorf("last batch with batch 1 missing: %v, want ErrConflict naming batch 1", err)
		}
		if got := f.committed(); len(got) != 0 {
			t.Fatalf("committed %v with a hole", got)
		}
		f.must(1, 0, 1, false, "b@1")
		if c := f.must(1, 0, 3, true, "d@1"); c == nil || c.Applied != 4 {
			t.Errorf("commit once batch 1 is in: %+v, want 4 rows applied", c)
		}
	})
}

// A run that resends from the acknowledged position drops what earlier
// runs staged past it: rows the device no longer sends (edited back,
// deleted) are not committed, and the session commits with fewer batches
// than the earlier run staged.
func TestRunsRestartDropsUnacknowledgedBatches(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		f := newRunFixture(t, db)
		for seq, n := range []string{"a@1", "b@1", "c@1", "d@1"} {
			f.must(1, 0, seq, false, n) // the answers to 2 and 3 are lost
		}
		// Run 2 resends from batch 2; its batch 3 arrives before its
		// batch 2 (two on the wire).
		f.must(2, 2, 3, false, "x@2")
		f.must(2, 2, 2, false, "c@2")
		if c := f.must(2, 2, 4, true, "y@2"); c == nil || c.Applied != 5 {
			t.Errorf("commit: %+v, want 5 rows applied", c)
		}
		got := f.committed()
		if _, ok := got["d"]; ok || got["c"] != "c@2" || got["x"] != "x@2" || len(got) != 5 {
			t.Errorf("committed %v, want a, b of run 1 and c, x, y of run 2", got)
		}
		// Fewer batches than run 1 staged: run 3 ends at batch 2.
		f.session = "s-runs-2"
		for seq, n := range []string{"p@1", "q@1", "r@1", "s@1"} {
			f.must(1, 0, seq, false, n)
		}
		if c := f.must(3, 2, 2, true, "r@3"); c == nil || c.Applied != 3 {
			t.Errorf("commit of run 3: %+v, want 3 rows applied (run 1's batch 3 dropped)", c)
		}
		if got := f.committed(); got["r"] != "r@3" || got["s"] != "" {
			t.Errorf("committed %v, want p, q of run 1 and r of run 3, not s", got)
		}
	})
}
