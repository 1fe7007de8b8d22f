package e2e

import (
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// The three conflict scenarios every sync system must answer, under each
// strategy. Device "late" made its edit while offline and syncs after
// device "early", which synced its own edit of the same row first.
func TestConflictScenarios(t *testing.T) {
	type want struct {
		deleted bool
		name    string
	}
	scenarios := []struct {
		name string
		// edits run in this order, early's first unless lateFirst.
		early, late func(t *testing.T, d *testkit.Device, c *testkit.Customer)
		lateFirst   bool
		want        map[server.Strategy]want
	}{
		{
			// Late device edited long ago; the other device edited later and synced first.
			name:      "very late update",
			late:      rename("late edit"),
			early:     rename("early edit"),
			lateFirst: true,
			want: map[server.Strategy]want{
				server.LastWriterWins: {false, "early edit"},
				server.ServerWins:     {false, "early edit"},
				server.ClientWins:     {false, "late edit"},
			},
		},
		{
			// The row was deleted elsewhere; this device updated it after.
			name:  "update of a row deleted elsewhere",
			early: remove,
			late:  rename("updated after delete"),
			want: map[server.Strategy]want{
				server.LastWriterWins: {false, "updated after delete"},
				server.ServerWins:     {true, "Original"},
				server.ClientWins:     {false, "updated after delete"},
			},
		},
		{
			// This device deleted the row long ago; it was updated elsewhere since.
			name:      "delete of a row updated elsewhere",
			late:      remove,
			early:     rename("updated elsewhere"),
			lateFirst: true,
			want: map[server.Strategy]want{
				server.LastWriterWins: {false, "updated elsewhere"},
				server.ServerWins:     {false, "updated elsewhere"},
				server.ClientWins:     {true, "Original"},
			},
		},
	}
	for _, sc := range scenarios {
		for _, strategy := range []server.Strategy{server.LastWriterWins, server.ServerWins, server.ClientWins} {
			t.Run(sc.name+"/"+string(strategy), func(t *testing.T) {
				reg := testkit.Registry(t)
				srv := testkit.NewServer(t, reg, server.Options{Strategies: map[string]server.Strategy{"customers": strategy}})
				var conflicts []coordinator.Conflict
				early := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-ada"})
				late := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob",
					Co: coordinator.Options{OnConflict: func(c coordinator.Conflict) { conflicts = append(conflicts, c) }}})

				c := testkit.Customer{Name: "Original"}
				if err := early.DB.Save(ctx, &c); err != nil {
					t.Fatal(err)
				}
				early.Sync(t)
				late.Sync(t)

				first, second := early, late
				firstEdit, secondEdit := sc.early, sc.late
				if sc.lateFirst {
					first, second, firstEdit, secondEdit = late, early, sc.late, sc.early
				}
				firstEdit(t, first, &c)
				time.Sleep(3 * time.Millisecond) // a strictly later stamp
				secondEdit(t, second, &c)

				early.Sync(t)
				rep := late.Sync(t)
				early.Sync(t)

				if rep.Conflicts != 1 || len(conflicts) != 1 {
					t.Fatalf("late device: Report.Conflicts=%d, OnConflict calls=%d, want 1 and 1", rep.Conflicts, len(conflicts))
				}
				if conflicts[0].Strategy != string(strategy) || conflicts[0].ID != c.ID {
					t.Errorf("conflict=%+v, want strategy %s on %s", conflicts[0], strategy, c.ID)
				}
				w := sc.want[strategy]
				for _, d := range []*testkit.Device{early, late} {
					var got testkit.Customer
					rows, err := d.DB.SQL().Query(`SELECT name, _deleted, _dirty FROM customers WHERE id = ?`, c.ID)
					if err != nil {
						t.Fatal(err)
					}
					var deleted, dirty bool
					rows.Next()
					rows.Scan(&got.Name, &deleted, &dirty)
					rows.Close()
					if deleted != w.deleted || (!w.deleted && got.Name != w.name) || dirty {
						t.Errorf("device holds name=%q deleted=%v dirty=%v, want name=%q deleted=%v clean", got.Name, deleted, dirty, w.name, w.deleted)
					}
				}
				assertConverged(t, srv, early, late)
			})
		}
	}
}

func rename(name string) func(*testing.T, *testkit.Device, *testkit.Customer) {
	return func(t *testing.T, d *testkit.Device, c *testkit.Customer) {
		t.Helper()
		var got testkit.Customer
		if err := d.DB.Get(ctx, &got, c.ID); err != nil {
			t.Fatal(err)
		}
		got.Name = name
		if err := d.DB.Save(ctx, &got); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(t *testing.T, d *testkit.Device, c *testkit.Customer) {
	t.Helper()
	if err := d.DB.Delete(ctx, &testkit.Customer{ID: c.ID}); err != nil {
		t.Fatal(err)
	}
}
