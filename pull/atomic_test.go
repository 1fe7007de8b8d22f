package pull_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/pull"
	"github.com/tethersync/tether/server"
)

// bigOrder saves one customer with n orders in one transaction and pushes
// them: one session, one server version.
func bigOrder(t *testing.T, w *writer, n int) {
	t.Helper()
	ctx := testCtx(t)
	err := w.db.Update(ctx, func(tx *localdb.Tx) error {
		c := testkit.Customer{Name: "big"}
		if err := tx.Save(ctx, &c); err != nil {
			return err
		}
		for range n {
			if err := tx.Save(ctx, &testkit.Order{CustomerID: c.ID, Total: 1, PlacedAt: time.Unix(0, 0)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w.push(t)
}

// counts returns how many live customers and orders db holds.
func counts(t *testing.T, db *localdb.DB) (customers, orders int) {
	t.Helper()
	err := db.SQL().QueryRowContext(testCtx(t), `SELECT (SELECT count(*) FROM customers WHERE NOT "_deleted"),
		(SELECT count(*) FROM orders WHERE NOT "_deleted")`).Scan(&customers, &orders)
	if err != nil {
		t.Fatal(err)
	}
	return customers, orders
}

// G4: a session larger than a page reaches another device whole. An app
// reading the database while the pull goes page by page (pages of 500
// rows, a session of 2,501) sees the customer with none of its orders
// or with all 2,500, never part of them.
func TestPullAppliesSessionsWhole(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	w := newWriter(t, reg, srv.URL)
	bigOrder(t, w, 2500)

	db, api := device(t, reg, srv.URL, "token-ada", nil, "")
	seen := map[[2]int]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the app's reader
		defer wg.Done()
		for i := 0; i < 100000; i++ {
			var c, o int
			if err := db.SQL().QueryRowContext(ctx, `SELECT (SELECT count(*) FROM customers WHERE NOT "_deleted"),
				(SELECT count(*) FROM orders WHERE NOT "_deleted")`).Scan(&c, &o); err == nil {
				seen[[2]int{c, o}] = true
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	pages := 0
	res, err := pull.New(db.Syncer(), api, pull.Options{PageSize: 500, OnPage: func(map[string]int) { pages++ }}).Pull(ctx)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows["orders"] != 2500 || pages < 5 {
		t.Fatalf("pulled %v in %d pages, want 2,500 orders in at least 5 pages", res.Rows, pages)
	}
	for s := range seen {
		if s != [2]int{0, 0} && s != [2]int{1, 2500} {
			t.Errorf("the app saw %d customers and %d orders: part of a session", s[0], s[1])
		}
	}
	if c, o := counts(t, db); c != 1 || o != 2500 {
		t.Fatalf("after the pull: %d customers, %d orders", c, o)
	}
}

// G4, G5: a pull interrupted inside a session (the answer to its third
// page lost, then the process restarted) shows none of the session, keeps
// the pages it set aside, and goes on from the page after them: the
// session arrives whole, and no page is fetched twice.
func TestPullResumesInsideASession(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	w := newWriter(t, reg, srv.URL)
	bigOrder(t, w, 1400)

	path := t.TempDir() + "/device.db"
	broken := newCursors(testkit.DropResponse, 2)
	db, api := device(t, reg, srv.URL, "token-ada", broken, path)
	if _, err := pull.New(db.Syncer(), api, pull.Options{PageSize: 500}).Pull(ctx); err == nil {
		t.Fatal("Pull succeeded through a lost page")
	}
	sent := broken.take()
	if c, o := counts(t, db); c != 0 || o != 0 {
		t.Fatalf("after the interruption the app sees %d customers and %d orders, want none of the session", c, o)
	}
	stored := cursor(t, db)
	if len(sent) != 3 || stored != sent[2] {
		t.Fatalf("requests %q, stored cursor %q: want the cursor after the two pages set aside", sent, stored)
	}
	db.Close()

	tr := newCursors(testkit.Pass)
	db2, api2 := device(t, reg, srv.URL, "token-ada", tr, path)
	res, err := pull.New(db2.Syncer(), api2, pull.Options{PageSize: 500}).Pull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sent := tr.take(); len(sent) == 0 || sent[0] != stored {
		t.Errorf("the restarted pull sent %q, want it to go on from %q", sent, stored)
	}
	if res.Rows["orders"] >= 1400 {
		t.Errorf("the restarted pull fetched %v again, want only what it had not set aside", res.Rows)
	}
	if c, o := counts(t, db2); c != 1 || o != 1400 {
		t.Fatalf("after the resumed pull: %d customers, %d orders, want 1 and 1,400", c, o)
	}
	if res.Applied != 1401 {
		t.Errorf("applied %d rows, want the whole session (1,401) at once", res.Applied)
	}
}
