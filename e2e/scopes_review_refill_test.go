package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
)

type scLabel struct {
	entity.Meta `sync:"labels,4"`
	ID          string `db:"id"`
	Name        string `db:"name"`
}

// A device whose app upgrade adds a table pulls again from the empty
// cursor (refill): the server takes it for a device that holds nothing,
// records the principal's keys as held, and never evicts the rows of the
// keys the principal lost while the device was away.
func TestScopesReviewRefillKeepsRevokedRows(t *testing.T) {
	v1 := scRegistry(t)
	v2 := entity.NewRegistry()
	if err := v2.Register(scTeam{}, scProject{}, scTask{}, scMembership{}, scLabel{}); err != nil {
		t.Fatal(err)
	}
	stores.Each(t, stores.All, func(t *testing.T, sdb stores.Database) {
		_, srv, url := scStart(t, sdb, v2.Schema())
		ctx := context.Background()
		admin := testkit.NewDevice(t, v2, url, testkit.DeviceOptions{Token: "token-admin"})
		for _, v := range []any{&scTeam{ID: "A"}, &scTeam{ID: "B"}, &scProject{ID: "pa", TeamID: "A"}, &scProject{ID: "pb", TeamID: "B"},
			&scTask{ID: "ta", ProjectID: "pa"}} {
			admin.DB.Save(ctx, v)
		}
		admin.Sync(t)
		scMember(t, srv, "m1", "ada", "A", false)
		scMember(t, srv, "m2", "ada", "B", false)
		path := filepath.Join(t.TempDir(), "ada.db")
		ada := testkit.NewDevice(t, v1, url, testkit.DeviceOptions{Token: "token-ada", Path: path})
		ada.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks"); got != "pa,pb|ta" {
			t.Fatalf("ada holds %s", got)
		}
		scMember(t, srv, "m1", "ada", "A", true) // while ada is away
		ada.Co.Close()
		ada.DB.Close()
		up := testkit.NewDevice(t, v2, url, testkit.DeviceOptions{Token: "token-ada", Path: path})
		up.Sync(t)
		up.Sync(t)
		if got := scIDs(t, up.DB, "projects") + "|" + scIDs(t, up.DB, "tasks"); got != "pb|" {
			t.Fatalf("after the revocation and an app upgrade, ada holds %s; want pb|", got)
		}
	})
}
