package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// setName saves customer id with name on d.
func setName(t *testing.T, d *testkit.Device, id, name string) {
	t.Helper()
	var c testkit.Customer
	if err := d.DB.Get(ctx, &c, id); err != nil {
		t.Fatal(err)
	}
	c.Name = name
	if err := d.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
}

// later makes the next write's clock stamp later than the last one's on
// any device: stamps of two devices in the same millisecond are ordered by
// device id, not by time.
func later() { time.Sleep(3 * time.Millisecond) }

func nameOf(t *testing.T, d *testkit.Device, id string) string {
	t.Helper()
	var c testkit.Customer
	if err := d.DB.Get(ctx, &c, id); err != nil {
		if errors.Is(err, localdb.ErrNotFound) {
			return "<deleted>"
		}
		t.Fatal(err)
	}
	return c.Name
}

// Two devices edit one row; the loser's conflict log offers both versions,
// and keeping the local one makes it win everywhere on the next syncs.
func TestConflictLogKeepLocal(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	c := testkit.Customer{ID: "c1", Name: "original"}
	if err := a.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	b.Sync(t)
	setName(t, b, "c1", "bob's") // older stamp
	later()
	setName(t, a, "c1", "ada's") // newer stamp
	a.Sync(t)
	b.Sync(t) // b loses under last-writer-wins
	if got := nameOf(t, b, "c1"); got != "ada's" {
		t.Fatalf("b holds %q after losing, want ada's", got)
	}
	log, err := b.DB.Conflicts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 1 {
		t.Fatalf("b's conflict log has %d entries, want 1", len(log))
	}
	e := log[0]
	if e.Table != "customers" || e.RowID != "c1" || e.Winner != wire.WinnerServer || e.Strategy != string(server.LastWriterWins) ||
		e.Local.Values["name"] != "bob's" || e.Winning.Values["name"] != "ada's" || e.At.IsZero() {
		t.Errorf("log entry %+v", e)
	}
	if log, _ := a.DB.Conflicts(ctx); len(log) != 0 {
		t.Errorf("the winner's log has %d entries, want none", len(log))
	}
	if err := b.DB.KeepLocal(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if got := nameOf(t, b, "c1"); got != "bob's" {
		t.Errorf("after KeepLocal b holds %q, want bob's", got)
	}
	if err := b.DB.KeepLocal(ctx, e.ID); !errors.Is(err, localdb.ErrConflictClosed) {
		t.Errorf("second KeepLocal: %v, want ErrConflictClosed", err)
	}
	b.Sync(t)
	a.Sync(t)
	for _, d := range []*testkit.Device{a, b} {
		if got := nameOf(t, d, "c1"); got != "bob's" {
			t.Errorf("a device holds %q, want the kept bob's", got)
		}
	}
	if log, _ := b.DB.Conflicts(ctx); len(log) != 0 {
		t.Errorf("b's log still has %d open entries", len(log))
	}
}

func TestConflictLogDismiss(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{Strategies: map[string]server.Strategy{"customers": server.ServerWins}})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	c := testkit.Customer{ID: "c1", Name: "original"}
	if err := a.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	b.Sync(t)
	setName(t, a, "c1", "ada's")
	setName(t, b, "c1", "bob's")
	a.Sync(t)
	b.Sync(t)
	log, _ := b.DB.Conflicts(ctx)
	if len(log) != 1 || log[0].Strategy != string(server.ServerWins) {
		t.Fatalf("log %+v, want one server-wins entry", log)
	}
	if err := b.DB.DismissConflict(ctx, log[0].ID); err != nil {
		t.Fatal(err)
	}
	if log, _ := b.DB.Conflicts(ctx); len(log) != 0 {
		t.Errorf("%d open entries after dismissing", len(log))
	}
	if got := nameOf(t, b, "c1"); got != "ada's" {
		t.Errorf("b holds %q, want the winner", got)
	}
	if n, _ := b.DB.Pending(ctx); n != 0 {
		t.Errorf("dismissing left %d rows to push", n)
	}
}

// A custom resolver merges both edits; both devices converge on the merge
// and the pushing device's log says so, with the server row it replaced.
func TestCustomResolverMerge(t *testing.T) {
	reg := testkit.Registry(t)
	merge := func(_ context.Context, c server.Conflict) (server.Resolution, error) {
		vals := map[string]any{}
		for k, v := range c.Server.Values {
			vals[k] = v
		}
		vals["name"] = c.Server.Values["name"].(string) + " & " + c.Pushed.Values["name"].(string)
		return server.Resolution{Winner: wire.WinnerMerged, Values: vals}, nil
	}
	srv := testkit.NewServer(t, reg, server.Options{Resolvers: map[string]server.ResolveFunc{"customers": merge}})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	c := testkit.Customer{ID: "c1", Name: "original"}
	if err := a.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	b.Sync(t)
	setName(t, a, "c1", "ada")
	setName(t, b, "c1", "bob")
	a.Sync(t)
	b.Sync(t)
	a.Sync(t)
	for _, d := range []*testkit.Device{a, b} {
		if got := nameOf(t, d, "c1"); got != "ada & bob" {
			t.Errorf("a device holds %q, want the merge", got)
		}
	}
	log, _ := b.DB.Conflicts(ctx)
	if len(log) != 1 || log[0].Winner != wire.WinnerMerged || log[0].Strategy != string(server.Custom) ||
		log[0].Lost == nil || log[0].Lost.Values["name"] != "ada" || log[0].Local.Values["name"] != "bob" {
		t.Errorf("log %+v", log)
	}
}

// Delete against update, per table: by default the newer write wins (a
// newer update brings the row back); with DeleteAlwaysWins the delete wins
// in either order.
func TestDeletePolicy(t *testing.T) {
	for _, tt := range []struct {
		name        string
		policy      server.DeletePolicy
		deleteFirst bool // the delete is pushed first (and is older)
		wantDeleted bool
	}{
		{"newer update revives", server.NewerWins, true, false},
		{"newer delete wins", server.NewerWins, false, true},
		{"delete wins though older", server.DeleteAlwaysWins, true, true},
		{"delete wins pushed second", server.DeleteAlwaysWins, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := testkit.Registry(t)
			srv := testkit.NewServer(t, reg, server.Options{Deletes: map[string]server.DeletePolicy{"customers": tt.policy}})
			a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
			b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
			c := testkit.Customer{ID: "c1", Name: "original"}
			if err := a.DB.Save(ctx, &c); err != nil {
				t.Fatal(err)
			}
			a.Sync(t)
			b.Sync(t)
			del := func() {
				if err := a.DB.Delete(ctx, &testkit.Customer{ID: "c1"}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.deleteFirst {
				del()
				later()
				setName(t, b, "c1", "updated")
				a.Sync(t)
				b.Sync(t)
			} else {
				setName(t, b, "c1", "updated")
				later()
				del()
				b.Sync(t)
				a.Sync(t)
			}
			a.Sync(t)
			b.Sync(t)
			for i, d := range []*testkit.Device{a, b} {
				got := nameOf(t, d, "c1")
				if (got == "<deleted>") != tt.wantDeleted {
					t.Errorf("device %d holds %q, want deleted=%v", i, got, tt.wantDeleted)
				}
			}
		})
	}
}
