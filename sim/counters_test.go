package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

// The counters' simulation: devices add to and take from the stock of a
// few items, through the API and with plain SQL, rename them (conflicts
// under last-writer-wins), create items, sync with requests lost,
// duplicated, cut and failed on the way, are interrupted in the middle of
// a sync, killed and reopened, and restored from backups they took. Its
// oracle: once the faults stop and every device syncs, every device and
// the server hold, for each item, its first stock plus every increment a
// device made (a device syncs whole before it is restored, so that no
// increment is the backup's to lose).

// StockItem is an item whose stock adds up.
type StockItem struct {
	entity.Meta `sync:"stock_items,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Stock       int64  `db:"stock,counter"`
}

// ledger is what the oracle expects: each item's stock.
type ledger struct {
	mu    sync.Mutex
	stock map[string]int64
}

func (l *ledger) add(id string, delta int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stock[id] += delta
}

// counterDevice is one device of the run.
type counterDevice struct {
	name, path, url string
	reg             *entity.Registry
	rng             *rand.Rand
	quiet           bool // no faults: set while the device must sync whole
	mu              sync.Mutex
	ft              *testkit.FaultTransport
	db              *localdb.DB
	co              *coordinator.Coordinator
	backup          string // the path of its latest backup, if any
	created         int
	resynced        int // syncs syncWhole had to run again
}

var counterFaults = []testkit.Fault{testkit.DropRequest, testkit.DropResponse, testkit.Duplicate, testkit.Status500,
	testkit.Status503, testkit.Reset, testkit.Truncate}

func (d *counterDevice) open() error {
	db, err := localdb.OpenWith(context.Background(), d.path, d.reg, localdb.Options{})
	if err != nil {
		return err
	}
	api := client.New(d.url, client.Options{Token: "token-ada", Transport: d.ft, Timeout: 10 * time.Second})
	d.db, d.co = db, coordinator.New(db, api, coordinator.Options{InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		MaxElapsed: 10 * time.Second, PushBatchSize: 3, PullBatchSize: 4, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return nil
}

func (d *counterDevice) close() {
	d.co.Close()
	d.db.Close()
}

// decide draws the fault of one request: one in five is lost, doubled
// or failed, unless the device is quiet.
func (d *counterDevice) decide(*http.Request, string, int) testkit.Fault {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.quiet || d.rng.IntN(5) != 0 {
		return testkit.Pass
	}
	return counterFaults[d.rng.IntN(len(counterFaults))]
}

func (d *counterDevice) intN(n int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rng.IntN(n)
}

// syncWhole syncs without faults until a sync succeeds (bounded).
func (d *counterDevice) syncWhole(ctx context.Context) error {
	d.mu.Lock()
	d.quiet = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.quiet = false
		d.mu.Unlock()
	}()
	var err error
	for range 5 {
		if _, err = d.co.SyncNow(ctx); err != nil {
			continue
		}
		// A SyncNow called just after one that was cancelled can end
		// without pushing rows written in between (seen here, in the
		// coordinator: not counters'): sync again until nothing waits.
		var left int
		if err = d.db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM _tether_increments`).Scan(&left); err != nil {
			return err
		}
		n, err := d.db.Pending(ctx)
		if err != nil {
			return err
		}
		if n == 0 && left == 0 {
			return nil
		}
		d.resynced++
		err = fmt.Errorf("%d dirty rows and %d increments left after a sync", n, left)
	}
	return fmt.Errorf("%s: sync without faults: %w", d.name, err)
}

// op does one random operation.
func (d *counterDevice) op(ctx context.Context, items []string, l *ledger) error {
	id := items[d.intN(len(items))]
	delta := int64(d.intN(9) - 3)
	switch n := d.intN(100); {
	case n < 35: // through the API, read and written in one transaction
		err := d.db.Update(ctx, func(tx *localdb.Tx) error {
			var it StockItem
			if err := tx.Get(ctx, &it, id); err != nil {
				return fmt.Errorf("get %s: %w", id, err)
			}
			it.Stock += delta
			return tx.Save(ctx, &it)
		})
		if err != nil {
			return err
		}
		l.add(id, delta)
	case n < 55: // plain SQL
		if _, err := d.db.SQL().ExecContext(ctx, `UPDATE stock_items SET stock = stock + ? WHERE id = ?`, delta, id); err != nil {
			return err
		}
		l.add(id, delta)
	case n < 65: // a rename: a conflict for last-writer-wins, never for the stock
		return d.db.Update(ctx, func(tx *localdb.Tx) error {
			var it StockItem
			if err := tx.Get(ctx, &it, id); err != nil {
				return err
			}
			it.Name = fmt.Sprintf("%s's name %d", d.name, n)
			return tx.Save(ctx, &it)
		})
	case n < 67: // a new item, its first stock counted
		d.created++
		it := StockItem{ID: fmt.Sprintf("%s-%d", d.name, d.created), Name: "new", Stock: int64(d.intN(50))}
		if err := d.db.Save(ctx, &it); err != nil {
			return err
		}
		l.add(it.ID, it.Stock)
	case n < 85:
		d.co.SyncNow(ctx) // faults may end it: the next one carries on
	case n < 90: // interrupted in the middle of a sync
		sctx, cancel := context.WithTimeout(ctx, time.Duration(1+d.intN(15))*time.Millisecond)
		d.co.SyncNow(sctx)
		cancel()
	case n < 94: // killed and reopened
		d.close()
		return d.open()
	case n < 97: // a backup
		path := filepath.Join(filepath.Dir(d.path), fmt.Sprintf("%s-backup-%d.db", d.name, n))
		os.Remove(path)
		if _, err := d.db.SQL().ExecContext(ctx, fmt.Sprintf(`VACUUM INTO '%s'`, path)); err != nil {
			return err
		}
		d.backup = path
	default: // restored from the backup, after a whole sync
		if d.backup == "" {
			return nil
		}
		if err := d.syncWhole(ctx); err != nil {
			return err
		}
		d.close()
		for _, f := range []string{d.path, d.path + "-wal", d.path + "-shm"} {
			os.Remove(f)
		}
		if err := copyFile(d.backup, d.path); err != nil {
			return err
		}
		return d.open()
	}
	return nil
}

// TestCountersSimulation runs the counters' simulation: -sim.ops
// operations across four devices, seeded by -sim.seed.
func TestCountersSimulation(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./sim -run TestCountersSimulation -sim.seed=%d -sim.ops=%d)", seed, seed, *opsFlag)
	ctx := context.Background()
	reg := entity.NewRegistry()
	if err := reg.Register(StockItem{}); err != nil {
		t.Fatal(err)
	}
	srv := testkit.NewServer(t, reg, server.Options{})
	dir := t.TempDir()
	l := &ledger{stock: map[string]int64{}}
	devs := make([]*counterDevice, 4)
	for i := range devs {
		d := &counterDevice{name: fmt.Sprintf("d%d", i), path: filepath.Join(dir, fmt.Sprintf("d%d.db", i)), url: srv.URL, reg: reg,
			rng: rand.New(rand.NewPCG(seed, uint64(i)))}
		d.ft = &testkit.FaultTransport{Decide: d.decide}
		if err := d.open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.close() })
		devs[i] = d
	}
	var items []string
	for i := range 3 {
		it := StockItem{ID: fmt.Sprintf("item%d", i), Name: "item", Stock: int64(10 * i)}
		if err := devs[0].db.Save(ctx, &it); err != nil {
			t.Fatal(err)
		}
		l.add(it.ID, it.Stock)
		items = append(items, it.ID)
	}
	for _, d := range devs {
		if err := d.syncWhole(ctx); err != nil {
			t.Fatal(err)
		}
	}

	per := max(*opsFlag/len(devs), 50)
	var wg sync.WaitGroup
	errs := make([]error, len(devs))
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range per {
				if err := d.op(ctx, items, l); err != nil {
					errs[i] = fmt.Errorf("%s op %d: %w", d.name, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	for range 2 {
		for _, d := range devs {
			if err := d.syncWhole(ctx); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
	}
	for _, d := range devs {
		if d.resynced > 0 {
			t.Logf("%s: %d whole syncs left rows behind and ran again", d.name, d.resynced)
		}
	}
	checkCounters(t, seed, srv, devs, l)
}

// checkCounters is the oracle: every device and the server hold each
// item's expected stock, and nothing waits to be pushed.
func checkCounters(t *testing.T, seed uint64, srv *testkit.Server, devs []*counterDevice, l *ledger) {
	t.Helper()
	ctx := context.Background()
	srvDB := testkit.OpenServerDB(t, srv.Path)
	for id, want := range l.stock {
		var got int64
		if err := srvDB.QueryRowContext(ctx, `SELECT stock FROM stock_items WHERE id = ?`, id).Scan(&got); err != nil {
			t.Fatalf("seed %d: server %s: %v", seed, id, err)
		}
		if got != want {
			t.Errorf("seed %d: server: %s stock=%d, want %d", seed, id, got, want)
		}
		for _, d := range devs {
			var it StockItem
			if err := d.db.Get(ctx, &it, id); err != nil {
				t.Fatalf("seed %d: %s %s: %v", seed, d.name, id, err)
			}
			if it.Stock != want {
				t.Errorf("seed %d: %s: %s stock=%d, want %d", seed, d.name, id, it.Stock, want)
			}
		}
	}
	for _, d := range devs {
		var pending int
		if err := d.db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM _tether_increments`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if n, _ := d.db.Pending(ctx); n != 0 || pending != 0 {
			t.Errorf("seed %d: %s: %d dirty rows and %d increments left, want none", seed, d.name, n, pending)
		}
	}
}
