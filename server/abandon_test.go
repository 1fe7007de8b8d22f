package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// A device abandons an open push session (DELETE /v1/sessions/{id}): its
// staged rows are dropped and it no longer counts against the limit of
// open sessions; abandoning again succeeds; another device cannot abandon
// it, another user of the device is refused, and a committed session is a
// conflict. On the three stores.
func TestAbandonSession(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store := db.Open(t, kindsSchema, stores.Options{})
		_, url := writeTestServer(t, store, server.Options{Limits: server.Limits{MaxOpenSessions: 2}})
		key := strings.Repeat("a", 43)
		as := func(token string) *client.Client {
			c := client.New(url, client.Options{Token: token})
			c.SetDeviceKey("dev-a", key)
			c.SetDeviceKey("dev-b", key)
			return c
		}
		ada, bob := as("token-ada"), as("token-bob")
		for _, dev := range []string{"dev-a", "dev-b"} {
			if _, err := ada.RegisterDevice(ctx, dev, "", nil); err != nil {
				t.Fatal(err)
			}
		}
		row := wire.Row{Table: "children", ID: "c1", HLC: wire.FormatStamp(1, 0, "dev-a"), Values: map[string]any{"parent_id": "p"}}
		if _, err := ada.SendBatch(ctx, "dev-a", "s1", 0, []wire.Row{row}, wire.BatchParams{Open: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := ada.OpenSession(ctx, "dev-a", "s2"); err != nil {
			t.Fatal(err)
		}
		if _, err := ada.OpenSession(ctx, "dev-a", "s3"); !errors.Is(err, wire.ErrConflict) {
			t.Fatalf("a third open session: %v, want the limit (ErrConflict)", err)
		}

		if err := ada.Abandon(ctx, "dev-a", "s1"); err != nil {
			t.Fatalf("Abandon(s1) = %v", err)
		}
		if err := ada.Abandon(ctx, "dev-a", "s1"); err != nil {
			t.Fatalf("Abandon(s1) again = %v, want nil (idempotent)", err)
		}
		if _, err := ada.OpenSession(ctx, "dev-a", "s3"); err != nil {
			t.Fatalf("open once s1 is abandoned: %v", err)
		}
		if _, err := ada.Commit(ctx, "dev-a", "s1"); !errors.Is(err, wire.ErrNotFound) {
			t.Fatalf("Commit(abandoned s1) = %v, want ErrNotFound", err)
		}

		// Another device's abandon leaves the session open.
		if err := ada.Abandon(ctx, "dev-b", "s2"); err != nil {
			t.Fatalf("dev-b Abandon(s2) = %v, want nil (not its session)", err)
		}
		// Another user of the device is refused.
		if _, err := bob.RegisterDevice(ctx, "dev-a", "", nil); err != nil {
			t.Fatal(err)
		}
		if err := bob.Abandon(ctx, "dev-a", "s2"); !errors.Is(err, wire.ErrForbidden) {
			t.Fatalf("bob Abandon(ada's s2) = %v, want ErrForbidden", err)
		}
		if _, err := ada.SendBatch(ctx, "dev-a", "s2", 0, []wire.Row{row}, wire.BatchParams{}); err != nil {
			t.Fatalf("stage in s2 after others tried to abandon it: %v", err)
		}
		c, err := ada.Commit(ctx, "dev-a", "s2")
		if err != nil || c.Applied != 1 {
			t.Fatalf("Commit(s2) = %+v, %v, want 1 row applied", c, err)
		}
		if err := ada.Abandon(ctx, "dev-a", "s2"); !errors.Is(err, wire.ErrConflict) {
			t.Fatalf("Abandon(committed s2) = %v, want ErrConflict", err)
		}
		if err := ada.Abandon(ctx, "dev-a", "bad_id"); !errors.Is(err, wire.ErrBadRequest) || !strings.Contains(err.Error(), wire.IDFormat) {
			t.Fatalf("Abandon(bad_id) = %v, want ErrBadRequest with the format", err)
		}
	})
}
