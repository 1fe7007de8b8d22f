package e2e

import (
	"context"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/wire"
)

// Scopes turned on over a database that has rows: the rows written before
// have no entries in _tether_keys, so nobody sees them (and nobody may
// edit them).
func TestScopesReviewScopesTurnedOn(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, stores.All, func(t *testing.T, sdb stores.Database) {
		ctx := context.Background()
		store1 := sdb.Open(t, reg.Schema(), stores.Options{})
		opts := scOptions()
		opts.Scopes = nil
		hs1 := testkit.Serve(t, store1, opts)
		admin := testkit.NewDevice(t, reg, hs1.URL, testkit.DeviceOptions{Token: "token-admin"})
		for _, v := range []any{&scTeam{ID: "A"}, &scProject{ID: "pa", TeamID: "A"}, &scTask{ID: "ta", ProjectID: "pa"}} {
			admin.DB.Save(ctx, v)
		}
		admin.Sync(t)
		hs1.Close()
		store1.Close()

		_, srv, url := scStart(t, sdb, reg.Schema())
		if _, err := srv.Write(ctx, scOffice, []wire.Row{{Table: "memberships", ID: "m1",
			Values: map[string]any{"user_id": "ada", "team_id": "A"}}}); err != nil {
			t.Fatal(err)
		}
		ada := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada"})
		ada.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks"); got != "pa|ta" {
			t.Fatalf("ada, member of A, holds %q after scopes were turned on; want pa|ta", got)
		}
	})
}
