package server_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// refsCostRows is how many rows each commit of TestReferenceRulesLinear
// holds: 20,000, 10,000 under the race detector; TETHER_REFSCOST_ROWS
// sets another number, to measure.
func refsCostRows(t *testing.T) int {
	v := os.Getenv("TETHER_REFSCOST_ROWS")
	switch {
	case v == "" && raceDetector:
		return 10_000
	case v == "":
		return 20_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("TETHER_REFSCOST_ROWS=%q, want a positive number", v)
	}
	return n
}

// A session of orphans, orders whose customer does not exist, commits in
// a small multiple of the time a session of as many ordinary orders does:
// the reference rules rewrite rows in bulk, not one by one. Each orphan
// is deleted, reported once to the pushing device as a reference
// conflict, and audited once, as deleted.
//
// The multiple allowed is 15, and 50 under the race detector: the answer
// of an orphan commit holds every orphan, with its row, as a conflict,
// JSON written twice (the stored answer, the response) and read once, Go
// work the detector slows about ten times, while the databases' work,
// nearly all of an ordinary commit, it does not slow. Measured on SQLite:
// about 5 times (17 to 21 under the detector, on the three stores); rules
// that rewrote row by row took 21.5 times at 20,000 rows, and 88 times at
// 10,000 under the detector (issue 19, finding 4). Measured again in
// issue 24 on SQLite: 7.3 to 7.6 times alone, and 10.2 times once while
// the rest of the suite ran beside it, hence 15.
func TestReferenceRulesLinear(t *testing.T) {
	n := refsCostRows(t)
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		url := testkit.Serve(t, store, server.Options{}).URL
		d := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		d.Sync(t) // registers the device
		dev := d.DB.DeviceID()
		// A client of its own: testkit's gives up after 10 s, which a
		// loaded machine (or rules that cost quadratic time) can take.
		api := client.New(url, client.Options{Token: "token-ada", Timeout: 5 * time.Minute})
		api.SetDeviceKey(dev, d.DB.Syncer().DeviceKey())
		ctx := t.Context()
		seq := 0
		push := func(rows []wire.Row) (wire.Commit, time.Duration) {
			t.Helper()
			session, err := api.OpenSession(ctx, dev, "")
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(rows); i += wire.MaxBatchSize {
				batch := rows[i:min(i+wire.MaxBatchSize, len(rows))]
				if _, err := api.SendBatch(ctx, dev, session, i/wire.MaxBatchSize, batch, wire.BatchParams{}); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			c, err := api.Commit(ctx, dev, session)
			if err != nil {
				t.Fatal(err)
			}
			return c, time.Since(start)
		}
		row := func(table, id string, values map[string]any) wire.Row {
			seq++
			return wire.Row{Table: table, ID: id, HLC: fmt.Sprintf("1700000000000.%06d.%s", seq, dev), Values: values}
		}
		push([]wire.Row{row("customers", "c0", map[string]any{"name": "Ada", "email": nil, "tags": "[]"})})
		orders := func(prefix string, customer func(i int) string) []wire.Row {
			rows := make([]wire.Row, n)
			for i := range rows {
				rows[i] = row("orders", fmt.Sprintf("%s-%06d", prefix, i), map[string]any{"customer_id": customer(i), "total": 1.5, "placed_at": "2026-11-23T08:00:00Z"})
			}
			return rows
		}

		// The best of two runs of each, to damp noise; up to four while
		// the bound is not met, as a loaded machine slows one run now and
		// then (rules that rewrite row by row miss it in every run).
		factor := 15
		if raceDetector {
			factor = 50
		}
		var ordinary, orphans time.Duration
		runs := 0
		for run := 0; run < 4 && (run < 2 || orphans > time.Duration(factor)*ordinary); run++ {
			runs++
			c, took := push(orders(fmt.Sprintf("ok%d", run), func(int) string { return "c0" }))
			if c.Applied != n || len(c.Conflicts) != 0 {
				t.Fatalf("ordinary commit: %d applied, %d conflicts; want %d, none", c.Applied, len(c.Conflicts), n)
			}
			if run == 0 || took < ordinary {
				ordinary = took
			}
			prefix := fmt.Sprintf("orphan%d", run)
			c, took = push(orders(prefix, func(i int) string { return fmt.Sprintf("missing-%d-%06d", run, i) }))
			if run == 0 || took < orphans {
				orphans = took
			}
			checkOrphans(t, store, c, prefix, n)
		}
		t.Logf("%d rows: ordinary commit %v, orphans %v (%.1fx)", n, ordinary, orphans, float64(orphans)/float64(ordinary))
		if orphans > time.Duration(factor)*ordinary {
			t.Errorf("a commit of %d orphans took %v, %.1f times one of %d ordinary rows (%v); want under %d times",
				n, orphans, float64(orphans)/float64(ordinary), n, ordinary, factor)
		}
		dg, err := store.Digest(ctx, server.Principal{Tenant: "acme", User: "ada"}, "orders", nil)
		if err != nil {
			t.Fatal(err)
		}
		if dg.Rows != runs*n {
			t.Errorf("%d live orders on the server, want the %d ordinary ones", dg.Rows, runs*n)
		}
	})
}

// checkOrphans checks the commit c of n orphans named prefix-i: each is
// reported once as a reference conflict, deleted, and audited once, as
// deleted.
func checkOrphans(t *testing.T, store server.Store, c wire.Commit, prefix string, n int) {
	t.Helper()
	ctx := t.Context()
	if c.Applied != n || len(c.Conflicts) != n {
		t.Fatalf("orphan commit: %d applied, %d conflicts; want %d of each", c.Applied, len(c.Conflicts), n)
	}
	seen := map[string]bool{}
	for i, cf := range c.Conflicts {
		want := fmt.Sprintf("%s-%06d", prefix, i) // in the order the rules met them
		if cf.Table != "orders" || cf.ID != want || cf.Strategy != wire.StrategyReference || !cf.Row.Deleted || cf.Row.Notify != "" ||
			cf.Row.Reason != "" || cf.Reason != fmt.Sprintf(`deleted: it references customers "missing-%s-%06d" (customer_id), which does not exist`, prefix[len("orphan"):], i) {
			t.Fatalf("conflict %d: %+v; want orders %s deleted, as a reference to a missing customer", i, cf, want)
		}
		seen[cf.ID] = true
	}
	if len(seen) != n {
		t.Fatalf("%d orphans reported, want %d", len(seen), n)
	}
	audit, err := store.Audit(ctx, "acme", c.Version-1, 2*n+1)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, e := range audit {
		if e.Version != c.Version {
			continue
		}
		if !seen[e.ID] || !e.Deleted {
			t.Fatalf("audit entry %+v; want one per orphan, deleted", e)
		}
		got++
	}
	if got != n {
		t.Errorf("%d audit entries of the commit, want %d", got, n)
	}
}
