package localdb_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
)

// A push's last batch says so: a batch of fewer rows than asked for, with
// no dirty row in a later table, moves the position past the last table,
// where NextDirty reads nothing. A full batch, or a dirty row in a later
// table, does not.
func TestNextDirtyKnowsTheLastBatch(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "app.db"), testkit.Customer{}, testkit.Order{})
	s := db.Syncer()
	var ids []string
	for _, name := range []string{"a", "b"} {
		c := testkit.Customer{Name: name}
		if err := db.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	end := localdb.PushPos{Table: 2}
	b, err := s.NextDirty(ctx, localdb.PushPos{}, 10)
	if err != nil || len(b.Rows) != 2 || b.Next != end {
		t.Fatalf("2 dirty customers, none after: %d rows, next %+v, %v; want 2 and the end %+v", len(b.Rows), b.Next, err, end)
	}
	if b, err := s.NextDirty(ctx, b.Next, 10); err != nil || len(b.Rows) != 0 || b.Next != end {
		t.Errorf("read at the end: %d rows, next %+v, %v; want none", len(b.Rows), b.Next, err)
	}
	if b, err := s.NextDirty(ctx, localdb.PushPos{}, 2); err != nil || len(b.Rows) != 2 || b.Next.Table != 0 {
		t.Errorf("a full batch: %d rows, next %+v, %v; want 2, then the customers read on", len(b.Rows), b.Next, err)
	}
	o := testkit.Order{CustomerID: ids[0], Total: 3, PlacedAt: time.Now()}
	if err := db.Save(ctx, &o); err != nil {
		t.Fatal(err)
	}
	b, err = s.NextDirty(ctx, localdb.PushPos{}, 10)
	if err != nil || len(b.Rows) != 2 || b.Next.Table != 0 {
		t.Fatalf("customers with a dirty order after them: %d rows, next %+v, %v; want 2, then the orders read", len(b.Rows), b.Next, err)
	}
	if b, err = s.NextDirty(ctx, b.Next, 10); err != nil || len(b.Rows) != 1 || b.Rows[0].ID != o.ID || b.Next != end {
		t.Errorf("the orders: %d rows, next %+v, %v; want the order, and the end", len(b.Rows), b.Next, err)
	}
	// G2: an order saved after the last batch was read is not in this
	// push, and stays dirty for the next one.
	later := testkit.Order{CustomerID: ids[1], Total: 4, PlacedAt: time.Now()}
	if err := db.Save(ctx, &later); err != nil {
		t.Fatal(err)
	}
	if b, err := s.NextDirty(ctx, end, 10); err != nil || len(b.Rows) != 0 {
		t.Errorf("read at the end after a later save: %d rows, %v; want none in this push", len(b.Rows), err)
	}
	b, err = s.NextDirty(ctx, localdb.PushPos{Table: 1}, 10)
	if err != nil || len(b.Rows) != 2 {
		t.Errorf("the next push's orders: %d rows, %v; want the order saved late too", len(b.Rows), err)
	}
}
