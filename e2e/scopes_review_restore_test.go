package e2e

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// A device database restored from a backup taken before a grant and a
// revocation: the server's record of the device's keys is the newer
// copy's, so the restored copy is neither evicted nor granted.
func TestScopesReviewRestoredBackup(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, stores.All, func(t *testing.T, sdb stores.Database) {
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
		member := func(id, user, team string, deleted bool) {
			t.Helper()
			if _, err := srv.Write(ctx, office, []wire.Row{{Table: "memberships", ID: id, Deleted: deleted,
				Values: map[string]any{"user_id": user, "team_id": team}}}); err != nil {
				t.Fatal(err)
			}
		}
		admin := testkit.NewDevice(t, reg, hs.URL, testkit.DeviceOptions{Token: "token-admin"})
		for _, v := range []any{&scTeam{ID: "A"}, &scTeam{ID: "B"}, &scProject{ID: "pa", TeamID: "A"}, &scProject{ID: "pb", TeamID: "B"},
			&scTask{ID: "ta", ProjectID: "pa"}, &scTask{ID: "tb", ProjectID: "pb"}} {
			admin.DB.Save(ctx, v)
		}
		admin.Sync(t)
		member("m1", "ada", "A", false)
		dir := t.TempDir()
		path := filepath.Join(dir, "ada.db")
		ada := testkit.NewDevice(t, reg, hs.URL, testkit.DeviceOptions{Token: "token-ada", Path: path})
		ada.Sync(t)
		ada.Co.Close()
		ada.DB.Close()
		backup, err := os.ReadFile(path) // the backup
		if err != nil {
			t.Fatal(err)
		}
		ada = testkit.NewDevice(t, reg, hs.URL, testkit.DeviceOptions{Token: "token-ada", Path: path})
		member("m2", "ada", "B", false)
		member("m1", "ada", "A", true)
		ada.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks"); got != "pb|tb" {
			t.Fatalf("before the restore ada holds %s", got)
		}
		ada.Co.Close()
		ada.DB.Close()
		os.Remove(path + "-wal")
		os.Remove(path + "-shm")
		if err := os.WriteFile(path, backup, 0o644); err != nil { // restored
			t.Fatal(err)
		}
		ada = testkit.NewDevice(t, reg, hs.URL, testkit.DeviceOptions{Token: "token-ada", Path: path})
		ada.Sync(t)
		ada.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks"); got != "pb|tb" {
			t.Fatalf("the restored device holds %s; want pb|tb (member of B only)", got)
		}
	})
}
