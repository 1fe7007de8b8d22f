package server_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Review: scopes turned off (the server restarted without them): a device
// that held only its keys' rows must rebuild or be brought the rest; its
// cursor (format 3, naming its held keys) must not go on as a plain one.
func TestScopesReviewScopesTurnedOff(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturingByName(t, db)
		f := storeFixture{t: t, s: store}
		p := seesName("ada", "a")
		f.device(p, "d")
		bo := openBackOffice(t, db)
		bo.exec(insertParent("x-b", "b"))
		capture(t, c)
		bo.exec(insertParent("x-a", "a"))
		capture(t, c)
		held := map[string]bool{}
		pull := func(cur server.Cursor) (server.Cursor, error) {
			for range 100 {
				rows, next, more, err := store.Changes(ctx, p, cur, 100, 1<<30, server.Echo{Device: "d"})
				if err != nil {
					return cur, err
				}
				for _, r := range rows {
					if r.Deleted || r.Evict {
						delete(held, r.ID)
					} else {
						held[r.ID] = true
					}
				}
				if cur = next; !more {
					break
				}
			}
			return cur, nil
		}
		cur, err := pull(server.Cursor{})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.UseScopes(nil, nil); err != nil { // restarted without scopes
			t.Fatal(err)
		}
		if _, err := pull(cur); errors.Is(err, wire.ErrHistoryPurged) {
			return
		} else if err != nil {
			t.Fatal(err)
		}
		if !held["x-b"] {
			t.Errorf("scopes off: the device holds %v and misses x-b for good (its scoped cursor %q went on as a plain one)", held, cur.String())
		}
	})
}
