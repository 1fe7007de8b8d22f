package e2e

import (
	"context"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/wire"
)

// A member creates a project in its own team and deletes it before
// syncing: the tombstone it pushes is refused as a creation it may not make.
func TestScopesReviewLocalOnlyDelete(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, []string{stores.SQLite}, func(t *testing.T, sdb stores.Database) {
		_, srv, url := scStart(t, sdb, reg.Schema())
		ctx := context.Background()
		srv.Write(ctx, scOffice, []wire.Row{{Table: "memberships", ID: "m1", Values: map[string]any{"user_id": "ada", "team_id": "A"}}})
		ada := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada"})
		ada.Sync(t)
		ada.DB.Save(ctx, &scProject{ID: "px", TeamID: "A"})
		ada.DB.Delete(ctx, &scProject{ID: "px"})
		rep := ada.Sync(t)
		cs, _ := ada.DB.Conflicts(ctx)
		if rep.Conflicts != 0 || len(cs) != 0 {
			t.Fatalf("a local create+delete in ada's own team: %d conflicts %+v", rep.Conflicts, cs)
		}
	})
}
