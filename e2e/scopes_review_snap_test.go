package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/wire"
)

type snapHook struct {
	n    int
	hook func(n int)
}

func (h *snapHook) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "snapshot") {
		h.n++
		if h.hook != nil {
			h.hook(h.n)
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// A key lost between two snapshot pages and held again before the pull
// after the snapshot: the later pages left out its rows, the device is
// recorded as holding it, and no grant brings them.
func TestScopesReviewSnapshotLoseRegain(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, stores.All, func(t *testing.T, sdb stores.Database) {
		_, srv, url := scStart(t, sdb, reg.Schema())
		ctx := context.Background()
		member := func(id, user, team string, deleted bool) {
			if _, err := srv.Write(ctx, scOffice, []wire.Row{{Table: "memberships", ID: id, Deleted: deleted,
				Values: map[string]any{"user_id": user, "team_id": team}}}); err != nil {
				t.Error(err)
			}
		}
		admin := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-admin"})
		for _, v := range []any{&scTeam{ID: "A"}, &scTeam{ID: "B"}, &scProject{ID: "pa", TeamID: "A"}, &scProject{ID: "pb", TeamID: "B"},
			&scTask{ID: "ta", ProjectID: "pa"}, &scTask{ID: "tb", ProjectID: "pb"}} {
			admin.DB.Save(ctx, v)
		}
		admin.Sync(t)
		member("m1", "ada", "A", false)
		member("m2", "ada", "B", false)
		h := &snapHook{}
		ada := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada", Transport: h, Co: coordinator.Options{PullBatchSize: 2}})
		ada.Sync(t)
		if err := ada.DB.Syncer().BeginRebuild(ctx); err != nil { // as after a long absence
			t.Fatal(err)
		}
		h.hook = func(n int) {
			if n == 2 {
				member("m2", "ada", "B", true) // B lost between the snapshot's pages
			}
			if n == 3 {
				member("m3", "ada", "B", false) // and held again before the last page
			}
		}
		rep := ada.Sync(t)
		if !rep.Rebuilt {
			t.Fatalf("no rebuild: %+v", rep)
		}
		h.hook = nil
		t.Logf("after the rebuild (%d snapshot requests): %s", h.n, scIDs(t, ada.DB, "projects")+"|"+scIDs(t, ada.DB, "tasks"))
		ada.Sync(t)
		ada.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks"); got != "pa,pb|ta,tb" {
			t.Fatalf("ada, member of A and B again, holds %s; want pa,pb|ta,tb", got)
		}
	})
}
