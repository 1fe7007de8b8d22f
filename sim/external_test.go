package sim

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

// TestExternalWriter runs devices that write customers and orders and
// sync, at random, while a back office writes the server's database with
// plain SQL (Options.CaptureExternalWrites): inserts, renames and deletes
// of customers, some in transactions of several rows. When everyone stops
// and every device syncs twice, every device holds exactly the server's
// live rows, the external writes included (G6, G16).
func TestExternalWriter(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./sim -run TestExternalWriter -sim.seed=%d -sim.ops=%d)", seed, seed, *opsFlag)
	ctx := context.Background()
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{CaptureExternalWrites: true, CaptureInterval: 2 * time.Millisecond})
	// -sim.ops counts the operations of the devices and the back office
	// together; the suite's default run makes 150 each.
	const devices = 3
	ops := 150
	if *opsFlag != 3000 {
		ops = max(1, *opsFlag/(devices+1))
	}
	devs := make([]*testkit.Device, devices)
	for i := range devs {
		devs[i] = testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	}
	bo := openExternal(t, srv.Path)
	var wg sync.WaitGroup
	errs := make(chan error, devices+1)
	for i, d := range devs {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range ops {
				if err := deviceOp(ctx, d.DB, rng, fmt.Sprintf("d%d-%d", i, n)); err != nil {
					errs <- fmt.Errorf("device %d: %w", i, err)
					return
				}
				if rng.IntN(4) == 0 {
					if _, err := d.Co.SyncNow(ctx); err != nil {
						errs <- fmt.Errorf("device %d: sync: %w", i, err)
						return
					}
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := range ops {
			if err := externalOp(ctx, bo, rng, n); err != nil {
				errs <- fmt.Errorf("back office: %w", err)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := srv.Store.Capture(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for _, d := range devs {
			d.Sync(t)
		}
	}
	srvDB := testkit.OpenServerDB(t, srv.Path)
	for _, tc := range []struct {
		table string
		cols  []string
	}{{"customers", testkit.CustomerCols}, {"orders", testkit.OrderCols}} {
		want := live(testkit.Dump(t, srvDB, tc.table, tc.cols, "acme"))
		for i, d := range devs {
			if got := live(testkit.Dump(t, d.DB.SQL(), tc.table, tc.cols, "")); !slices.Equal(got, want) {
				t.Errorf("device %d's %s differ from the server's (seed %d):\ndevice %d\nserver %d\n%s", i, tc.table, seed, len(got), len(want), diff(got, want))
			}
		}
	}
	var external int
	if err := srvDB.QueryRow(`SELECT count(*) FROM _tether_audit WHERE device = ?`, server.ExternalDevice).Scan(&external); err != nil {
		t.Fatal(err)
	}
	if external == 0 {
		t.Error("the audit log records no external write")
	}
}

// live keeps the rows of a Dump that are not deleted, without the flag.
func live(rows []string) []string {
	var out []string
	for _, r := range rows {
		if cut, ok := strings.CutSuffix(r, "|0"); ok {
			out = append(out, cut)
		} else if cut, ok := strings.CutSuffix(r, "|false"); ok {
			out = append(out, cut)
		}
	}
	return out
}

// diff lists the rows of a and b that the other lacks.
func diff(a, b []string) string {
	var out []string
	for _, r := range a {
		if !slices.Contains(b, r) {
			out = append(out, "device only: "+r)
		}
	}
	for _, r := range b {
		if !slices.Contains(a, r) {
			out = append(out, "server only: "+r)
		}
	}
	return strings.Join(out, "\n")
}

// openExternal opens the server's SQLite file as a back office does.
func openExternal(t *testing.T, path string) *sql.DB {
	db, err := sqlitedriver.Open(path, sqlitedriver.Config{BusyTimeout: 10 * time.Second, TxLock: "immediate"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// deviceOp makes one random write on a device: a customer inserted or
// renamed or deleted, or an order of a live customer.
func deviceOp(ctx context.Context, db *localdb.DB, rng *rand.Rand, name string) error {
	pick := func(table string) string {
		var ids []string
		rows, err := db.SQL().QueryContext(ctx, `SELECT id FROM `+table+` WHERE _deleted = 0 ORDER BY id`)
		if err != nil {
			return ""
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			rows.Scan(&id)
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			return ""
		}
		return ids[rng.IntN(len(ids))]
	}
	switch x := rng.IntN(10); {
	case x < 3:
		return db.Save(ctx, &testkit.Customer{Name: name, Tags: []string{}})
	case x < 6:
		var c testkit.Customer
		if err := db.Get(ctx, &c, pick("customers")); err != nil {
			return ignoreNotFound(err)
		}
		c.Name = name
		return db.Save(ctx, &c)
	case x < 7:
		var c testkit.Customer
		if err := db.Get(ctx, &c, pick("customers")); err != nil {
			return ignoreNotFound(err)
		}
		return ignoreNotFound(db.Delete(ctx, &c))
	default:
		parent := pick("customers")
		if parent == "" {
			return nil
		}
		return db.Save(ctx, &testkit.Order{CustomerID: parent, Total: float64(rng.IntN(100)), PlacedAt: time.Unix(1700000000, 0).UTC()})
	}
}

// externalOp makes one random write in the server's database, as a back
// office: it knows the app's columns, and nothing of tether's.
func externalOp(ctx context.Context, db *sql.DB, rng *rand.Rand, n int) error {
	pick := func(tx *sql.Tx) (string, error) {
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM customers WHERE _tenant = 'acme' AND NOT _deleted ORDER BY id LIMIT 1 OFFSET ?`, rng.IntN(20)).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return id, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i := range 1 + rng.IntN(3) { // a transaction of one to three writes
		id, err := pick(tx)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("bo-%d-%d", n, i)
		switch x := rng.IntN(10); {
		case x < 4 || id == "":
			_, err = tx.ExecContext(ctx, `INSERT INTO customers (_tenant, id, name, tags) VALUES ('acme', ?, ?, '[]')`, name, name)
		case x < 8:
			_, err = tx.ExecContext(ctx, `UPDATE customers SET name = ? WHERE _tenant = 'acme' AND id = ?`, name, id)
		default:
			_, err = tx.ExecContext(ctx, `DELETE FROM customers WHERE _tenant = 'acme' AND id = ?`, id)
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}
