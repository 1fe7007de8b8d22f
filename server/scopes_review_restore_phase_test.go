package server_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Review: a device database restored from a backup taken in the middle
// of scope phases (its cursor is a phase cursor of phases long done) must
// rebuild, or be brought to its principal's keys; it must not go on from
// the old position holding rows of keys it lost and missing older rows of
// the keys it holds.
func TestScopesReviewRestoredPhaseCursor(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturing(t, db)
		_ = c
		sc := &server.Scopes{
			Tables:    map[string]server.RowKeys{"parents": server.KeyColumn("name:", "name")},
			Principal: server.PrincipalKeys(server.ClaimKeys("names", "name:")),
		}
		if err := store.UseScopes(sc, nil); err != nil {
			t.Fatal(err)
		}
		f := storeFixture{t: t, s: store}
		sees := func(names ...any) server.Principal {
			return server.Principal{Tenant: "acme", User: "ada", Claims: map[string]any{"names": names}}
		}
		f.device(sees("a"), "d")
		bo := openBackOffice(t, db)
		bo.exec(insertParent("x-a", "a"), insertParent("x-b", "b"), insertParent("x-c", "c"))
		capture(t, c)
		type dev struct {
			rows map[string]bool
			cur  server.Cursor
		}
		page := func(d *dev, p server.Principal, limit int) (bool, error) {
			rows, next, more, err := store.Changes(ctx, p, d.cur, limit, 1<<30, server.Echo{Device: "d"})
			if err != nil {
				return false, err
			}
			for _, r := range rows {
				if r.Deleted || r.Evict {
					delete(d.rows, r.ID)
				} else {
					d.rows[r.ID] = true
				}
			}
			d.cur = next
			return more, nil
		}
		all := func(d *dev, p server.Principal) error {
			for range 100 {
				more, err := page(d, p, 100)
				if err != nil || !more {
					return err
				}
			}
			return nil
		}
		d := &dev{rows: map[string]bool{}}
		if err := all(d, sees("a")); err != nil {
			t.Fatal(err)
		}
		// Granted b, a page at a time: the backup is taken after the first page.
		if _, err := page(d, sees("a", "b"), 1); err != nil {
			t.Fatal(err)
		}
		backup := &dev{rows: map[string]bool{}, cur: d.cur}
		for k := range d.rows {
			backup.rows[k] = true
		}
		t.Logf("backup holds %v at phase %c", backup.rows, backup.cur.Phase)
		if err := all(d, sees("a", "b")); err != nil {
			t.Fatal(err)
		}
		if err := all(d, sees("c")); err != nil {
			t.Fatal(err)
		}
		// The database restored from the backup.
		err := all(backup, sees("c"))
		if errors.Is(err, wire.ErrHistoryPurged) {
			return // rebuilds: fine
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for k := range backup.rows {
			got = append(got, k)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != "x-c" {
			t.Errorf("the restored device holds %v, may see only x-c (and was not told to rebuild)", got)
		}
	})
}
