package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
)

// A device database restored from a backup taken before a grant and a
// revocation: the server's record of the device's keys is the newer
// copy's, so the restored copy is neither evicted nor granted.
func TestScopesReviewRestoredBackup(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, stores.All, func(t *testing.T, sdb stores.Database) {
		_, srv, url := scStart(t, sdb, reg.Schema())
		ctx := context.Background()
		admin := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-admin"})
		for _, v := range []any{&scTeam{ID: "A"}, &scTeam{ID: "B"}, &scProject{ID: "pa", TeamID: "A"}, &scProject{ID: "pb", TeamID: "B"},
			&scTask{ID: "ta", ProjectID: "pa"}, &scTask{ID: "tb", ProjectID: "pb"}} {
			admin.DB.Save(ctx, v)
		}
		admin.Sync(t)
		scMember(t, srv, "m1", "ada", "A", false)
		dir := t.TempDir()
		path := filepath.Join(dir, "ada.db")
		ada := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada", Path: path})
		ada.Sync(t)
		ada.Co.Close()
		ada.DB.Close()
		backup, err := os.ReadFile(path) // the backup
		if err != nil {
			t.Fatal(err)
		}
		ada = testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada", Path: path})
		scMember(t, srv, "m2", "ada", "B", false)
		scMember(t, srv, "m1", "ada", "A", true)
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
		ada = testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada", Path: path})
		ada.Sync(t)
		ada.Sync(t)
		if got := scIDs(t, ada.DB, "projects") + "|" + scIDs(t, ada.DB, "tasks"); got != "pb|tb" {
			t.Fatalf("the restored device holds %s; want pb|tb (member of B only)", got)
		}
	})
}
