package server_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// observed records what an Observer hears.
type observed struct {
	mu       sync.Mutex
	opened   int
	commits  []server.CommitInfo
	sweeps   []server.SweepInfo
	requests []server.RequestInfo
	pushed   int
	pulled   int
}

func (o *observed) Request(r server.RequestInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests = append(o.requests, r)
}

func (o *observed) SessionOpened(string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.opened++
}

func (o *observed) Committed(c server.CommitInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.commits = append(o.commits, c)
}

func (o *observed) RowsPushed(_ string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pushed += n
}

func (o *observed) RowsPulled(_ string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pulled += n
}

func (o *observed) Swept(s server.SweepInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sweeps = append(o.sweeps, s)
}

// Every store reports sessions opened and committed once each, however
// often their requests come, and what a sweep discarded, with the active
// devices.
func TestStoresReportToTheObserver(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		clock := testkit.NewClock()
		s := stores.Open(t, db.Kind, kindsSchema, stores.Options{Now: clock.Now})
		f := storeFixture{t: t, s: s, clock: clock}
		f.device(ada, "d1")
		o := &observed{}
		ctx := server.WithObserver(context.Background(), o)

		for range 2 { // the second open is a retry
			if _, err := s.OpenSession(ctx, ada, "d1", "s1", server.Limits{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := stage(ctx, s, ada, "d1", "s1", 0, []wire.Row{parent("p1", "a", "0000000000001.000000.d1")}, server.Limits{}); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second commit is answered with the first's answer
			if _, err := s.Commit(ctx, ada, "d1", "s1", lww, server.Limits{}, nil); err != nil {
				t.Fatal(err)
			}
		}
		last := &server.LastBatch{Seq: 0, Digest: strings.Repeat("ab", 32)}
		rows := []wire.Row{parent("p2", "b", "0000000000002.000000.d1"), parent("p3", "c", "0000000000002.000000.d1")}
		for range 2 { // one request that opens and commits, delivered twice
			if _, err := s.Push(ctx, ada, "d1", "s2", 0, rows, server.PushOptions{Open: true, Commit: last, Resolve: lww}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.OpenSession(ctx, ada, "d1", "s3", server.Limits{}); err != nil {
			t.Fatal(err)
		}
		if o.opened != 3 || len(o.commits) != 2 {
			t.Fatalf("heard %d sessions opened and %d commits, want 3 and 2", o.opened, len(o.commits))
		}
		if c := o.commits[1]; c.Tenant != "acme" || c.Device != "d1" || c.Applied != 2 || c.Duration <= 0 {
			t.Errorf("second commit heard as %+v, want tenant acme, device d1, 2 rows applied, a duration", c)
		}

		clock.Advance(server.DefaultSessionIdle + time.Hour) // s3 expires
		if _, _, _, err := s.Changes(ctx, ada, server.Cursor{}, 100, 1<<20, server.Echo{Device: "d1"}); err != nil {
			t.Fatal(err)
		}
		n, err := s.Sweep(ctx, server.Limits{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(o.sweeps) != 1 {
			t.Fatalf("heard %d sweeps, want 1", len(o.sweeps))
		}
		sw := o.sweeps[0]
		if sw.ExpiredSessions != 1 || sw.ActiveDevices["acme"] != 1 || sw.Err != nil {
			t.Errorf("sweep heard as %+v, want 1 expired session, 1 active device of acme", sw)
		}
		if total := sw.ExpiredSessions + sw.Tombstones + sw.CommittedSessions + sw.AuditEntries + sw.Devices + sw.Schemas; total != n {
			t.Errorf("the sweep's kinds add up to %d, it returned %d", total, n)
		}
	})
}
