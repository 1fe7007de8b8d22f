package server_test

import (
	"context"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

var reviewRefSchema = entity.Schema{Tables: []entity.Table{
	{Name: "parents", Priority: 1, Columns: []entity.Column{
		{Name: "id", Kind: entity.KindText},
		{Name: "name", Kind: entity.KindText},
	}},
	{Name: "kids", Priority: 2, Columns: []entity.Column{
		{Name: "id", Kind: entity.KindText},
		{Name: "parent_id", Kind: entity.KindText, Ref: "parents"},
	}},
}}

// Review: a reference rule's rewrite of a row the same commit wrote keeps
// the row's version: the capture triggers take it for an external write.
func TestScopesReviewCaptureRefRewrite(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store := db.Open(t, reviewRefSchema, stores.Options{})
		c := store.(server.Capturer)
		if err := c.CaptureExternal(ctx, true); err != nil {
			t.Fatal(err)
		}
		f := storeFixture{t: t, s: store}
		f.device(ada, "da")
		f.device(bob, "db")
		c1 := f.push(ada, "da", nil, []wire.Row{{Table: "parents", ID: "p1", HLC: "0000000000001.000000.da", Values: map[string]any{"name": "one"}}})
		f.push(bob, "db", nil, []wire.Row{{Table: "kids", ID: "k1", HLC: "0000000000002.000000.db", Values: map[string]any{"parent_id": "p1"}}})
		c3 := f.push(ada, "da", nil, []wire.Row{{Table: "parents", ID: "p1", Base: c1.Version, Deleted: true, HLC: "0000000000003.000000.da", Values: map[string]any{"name": "one"}}})
		t.Logf("delete commit: version %d, conflicts %d", c3.Version, len(c3.Conflicts))
		var v int64
		var del bool
		rows, _, _, err := store.Changes(ctx, ada, server.Cursor{}, 100, 1<<30, server.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.ID == "p1" {
				v, del = r.Version, r.Deleted
			}
		}
		if v != c3.Version || del {
			t.Errorf("p1, brought back by the delete's commit %d, is at version %d (deleted %v) in a pull; want %d, live", c3.Version, v, del, c3.Version)
		}
		n, err := c.Capture(ctx)
		if err != nil || n != 0 {
			t.Errorf("Capture() = %d, %v after device commits only; want 0 commits (the store's own rewrite was recorded as an external write)", n, err)
		}
	})
}
