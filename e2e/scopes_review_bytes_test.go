package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Grant pages ignore maxBytes: a page of limit large rows.
func TestScopesReviewGrantPageBytes(t *testing.T) {
	reg := scRegistry(t)
	stores.Each(t, []string{stores.SQLite}, func(t *testing.T, sdb stores.Database) {
		store, srv, url := scStart(t, sdb, reg.Schema())
		ctx := context.Background()
		var rows []wire.Row
		big := strings.Repeat("x", 100_000)
		for i := 0; i < 20; i++ {
			rows = append(rows, wire.Row{Table: "projects", ID: fmt.Sprintf("p%02d", i), Values: map[string]any{"team_id": "B", "name": big}})
		}
		rows = append(rows, wire.Row{Table: "memberships", ID: "m1", Values: map[string]any{"user_id": "ada", "team_id": "A"}})
		if _, err := srv.Write(ctx, scOffice, rows); err != nil {
			t.Fatal(err)
		}
		ada := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada"})
		ada.Sync(t)
		srv.Write(ctx, scOffice, []wire.Row{{Table: "memberships", ID: "m2", Values: map[string]any{"user_id": "ada", "team_id": "B"}}})
		text, _ := ada.DB.Syncer().Cursor(ctx)
		c, err := server.ParseCursor(text)
		if err != nil {
			t.Fatal(err)
		}
		p := server.Principal{Tenant: "acme", User: "ada"}
		const maxBytes = 150_000
		for i := 0; i < 10; i++ {
			out, next, more, err := store.Changes(ctx, p, c, 1000, maxBytes, server.Echo{Device: ada.DB.DeviceID()})
			if err != nil {
				t.Fatal(err)
			}
			size := 0
			for _, r := range out {
				size += r.Size()
			}
			if len(out) > 1 && size > maxBytes {
				t.Fatalf("page %d (phase %q): %d rows, %d bytes, over maxBytes %d", i, next.Phase, len(out), size, maxBytes)
			}
			if !more {
				break
			}
			c = next
		}
	})
}
