package e2e

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// A member creates a project in its own team and deletes it before
// syncing: the tombstone it pushes is refused as a creation it may not make.
func TestScopesReviewLocalOnlyDelete(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, []string{stores.SQLite}, func(t *testing.T, sdb stores.Database) {
		store := sdb.Open(t, reg.Schema(), stores.Options{})
		srv, err := server.New(store, scOptions())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		hs := httptest.NewServer(srv)
		t.Cleanup(hs.Close)
		ctx := context.Background()
		office := server.Principal{Tenant: "acme", User: "office"}
		srv.Write(ctx, office, []wire.Row{{Table: "memberships", ID: "m1", Values: map[string]any{"user_id": "ada", "team_id": "A"}}})
		ada := testkit.NewDevice(t, reg, hs.URL, testkit.DeviceOptions{Token: "token-ada"})
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
