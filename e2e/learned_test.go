package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/wire"
)

// heard collects what a coordinator's OnConflict was told, as
// "table id strategy: reason".
type heard struct {
	mu  sync.Mutex
	got []string
}

func (h *heard) add(c coordinator.Conflict) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, fmt.Sprintf("%s %s %s: %s", c.Table, c.ID, c.Strategy, c.Reason))
}

// take returns what was heard since the last call.
func (h *heard) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	got := h.got
	h.got = nil
	return got
}

// A delete the server undid to keep references whole shows in the deleting
// device's report and OnConflict, with its reason, once: not again on the
// next sync, and not twice though the page that brought it was set aside
// first (a page of one row ends inside the server version).
func TestPulledConflictReportedRestore(t *testing.T) {
	reg := registry(t, rCustomer{}, rOrder{}, rLine{})
	eachStore(t, reg, func(t *testing.T, url string) {
		var h heard
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Co: coordinator.Options{OnConflict: h.add, PullBatchSize: 1}})
		b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
		save(t, a, &rCustomer{ID: "c1", Name: "Ada"})
		a.Sync(t)
		b.Sync(t)
		del(t, a, &rCustomer{ID: "c1"})
		a.Sync(t)
		save(t, b, &rOrder{ID: "o1", CustomerID: "c1"})
		b.Sync(t)
		h.take()

		rep := a.Sync(t)
		got := h.take()
		if rep.Conflicts != 1 || len(got) != 1 || !strings.HasPrefix(got[0], "customers c1 reference: brought back") {
			t.Errorf("a's report counts %d conflicts, OnConflict heard %q; want 1, c1 brought back, with why", rep.Conflicts, got)
		}
		if rep := a.Sync(t); rep.Conflicts != 0 || len(h.take()) != 0 {
			t.Errorf("the next sync reports %d conflicts again", rep.Conflicts)
		}
		if n := len(referenceConflicts(t, a)); n != 1 {
			t.Errorf("a's conflict log holds %d entries, want 1", n)
		}
	})
}

// Rows the server deleted with the row they referenced (cascade) show in
// the report of the device that wrote them, once each.
func TestPulledConflictReportedCascade(t *testing.T) {
	reg := registry(t, rCustomer{}, cOrder{}, cLine{})
	eachStore(t, reg, func(t *testing.T, url string) {
		var h heard
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob", Co: coordinator.Options{OnConflict: h.add}})
		save(t, a, &rCustomer{ID: "c1", Name: "Ada"})
		a.Sync(t)
		b.Sync(t)
		save(t, b, &cOrder{ID: "o1", CustomerID: "c1"}, &cLine{ID: "l1", OrderID: "o1"})
		b.Sync(t)
		del(t, a, &rCustomer{ID: "c1"})
		a.Sync(t)
		h.take()

		rep := b.Sync(t)
		got := strings.Join(h.take(), "\n")
		if rep.Conflicts != 2 || !strings.Contains(got, `orders o1 reference: deleted with customers "c1"`) ||
			!strings.Contains(got, `lines l1 reference: deleted with orders "o1"`) {
			t.Errorf("b's report counts %d conflicts, OnConflict heard:\n%s\nwant o1 and l1 deleted, with why", rep.Conflicts, got)
		}
		if rep := b.Sync(t); rep.Conflicts != 0 || len(h.take()) != 0 {
			t.Errorf("the next sync reports %d conflicts again", rep.Conflicts)
		}
	})
}

// An edit made here to a row the device loses because its user may no
// longer see it (a membership revoked) shows in the report, with its
// reason, once; and so does a write the server refuses.
func TestPulledConflictReportedScope(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, stores.All, func(t *testing.T, sdb stores.Database) {
		_, srv, url := scStart(t, sdb, reg.Schema())
		if _, err := srv.Write(ctx, scOffice, []wire.Row{
			{Table: "projects", ID: "pa", Values: map[string]any{"team_id": "A", "name": "pa"}},
			{Table: "tasks", ID: "ta", Values: map[string]any{"project_id": "pa", "title": "ta"}},
		}); err != nil {
			t.Fatal(err)
		}
		scMember(t, srv, "m1", "ada", "A", false)
		var h heard
		var ada *testkit.Device
		var editAtPull atomic.Bool
		var editErr atomic.Value
		onProgress := func(p coordinator.Progress) {
			// An edit made during the sync, after the push read the
			// dirty rows: still here, unpushed, when the pull removes
			// the row.
			if p.Phase == coordinator.PhasePull && editAtPull.CompareAndSwap(true, false) {
				if err := ada.DB.Save(ctx, &scTask{ID: "ta", ProjectID: "pa", Title: "edited"}); err != nil {
					editErr.Store(err)
				}
			}
		}
		ada = testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada", Co: coordinator.Options{OnConflict: h.add, OnProgress: onProgress}})
		ada.Sync(t)
		if got := scIDs(t, ada.DB, "tasks"); got != "ta" {
			t.Fatalf("ada holds tasks %q, want ta", got)
		}

		scMember(t, srv, "m1", "ada", "A", true)
		editAtPull.Store(true)
		rep := ada.Sync(t)
		if err := editErr.Load(); err != nil {
			t.Fatal(err)
		}
		got := h.take()
		if rep.Conflicts != 1 || len(got) != 1 || !strings.HasPrefix(got[0], "tasks ta forbidden: you may no longer see this row") {
			t.Errorf("ada's report counts %d conflicts, OnConflict heard %q; want 1, ta removed with its edit, with why", rep.Conflicts, got)
		}
		if got := scIDs(t, ada.DB, "tasks"); got != "" {
			t.Errorf("ada still holds tasks %q", got)
		}
		if rep := ada.Sync(t); rep.Conflicts != 0 || len(h.take()) != 0 {
			t.Errorf("the next sync reports %d conflicts again", rep.Conflicts)
		}

		// A write the server refuses is reported too, once.
		if err := ada.DB.Save(ctx, &scProject{ID: "px", TeamID: "A", Name: "x"}); err != nil {
			t.Fatal(err)
		}
		rep = ada.Sync(t)
		if got := h.take(); rep.Conflicts != 1 || len(got) != 1 || !strings.HasPrefix(got[0], "projects px forbidden: ") {
			t.Errorf("ada's refused write: report counts %d conflicts, OnConflict heard %q; want 1", rep.Conflicts, got)
		}
		if rep := ada.Sync(t); rep.Conflicts != 0 || len(h.take()) != 0 {
			t.Errorf("the next sync reports %d conflicts again", rep.Conflicts)
		}
	})
}
