// Package sim is a randomized simulation of many devices syncing through a
// fault-injecting proxy with one server, checking guarantees G1-G7 of
// DESIGN.md once the faults stop. It is seeded: a failure prints the seed
// and the command that replays it.
//
//	go test ./sim                                 # the default run, under two minutes
//	go test ./sim -sim.seed=42 -v                 # replay a seed
//	go test ./sim -sim.soak -timeout 2h -v        # at least 100,000 operations
package sim

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/faultproxy"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

var (
	seedFlag    = flag.Uint64("sim.seed", 0, "seed of the simulation (0: from the clock)")
	opsFlag     = flag.Int("sim.ops", 3000, "operations across all devices")
	devicesFlag = flag.Int("sim.devices", 5, "devices syncing in process (one more runs in a child process)")
	soakFlag    = flag.Bool("sim.soak", false, "soak: at least 100,000 operations")
)

// Account is a parent row.
type Account struct {
	entity.Meta `sync:"accounts,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Balance     int64  `db:"balance"`
}

// Entry is a child row of an account.
type Entry struct {
	entity.Meta `sync:"entries,2"`
	ID          string  `db:"id"`
	AccountID   string  `db:"account_id,ref=accounts"`
	Amount      float64 `db:"amount"`
	Note        *string `db:"note"`
}

// Journal rows are only ever inserted: every one must reach the server.
type Journal struct {
	entity.Meta `sync:"journal,3"`
	ID          string `db:"id"`
	Device      string `db:"device"`
	Seq         int64  `db:"seq"`
}

func registry() *entity.Registry {
	reg := entity.NewRegistry()
	if err := reg.Register(Account{}, Entry{}, Journal{}); err != nil {
		panic(err)
	}
	return reg
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const token = "sim-token"

var tokens = server.StaticTokens{token: {Tenant: "sim", User: "sim"}}

// upstream is the server behind the proxy; it can be restarted on the same
// database file.
type upstream struct {
	path  string
	reg   *entity.Registry
	store *sqlitestore.Store
	hs    *httptest.Server
}

func startUpstream(t *testing.T, path string, reg *entity.Registry) *upstream {
	store, err := sqlitestore.Open(path, reg.Schema())
	if err != nil {
		t.Fatal(err)
	}
	handler, err := server.New(store, server.Options{Auth: tokens, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { handler.Close() })
	hs := httptest.NewServer(handler)
	return &upstream{path: path, reg: reg, store: store, hs: hs}
}

func (u *upstream) close() {
	u.hs.CloseClientConnections()
	u.hs.Close()
	u.store.Close()
}

// device is a simulated device in this process.
type device struct {
	name string
	path string
	db   *localdb.DB
	co   *coordinator.Coordinator
	rng  *rand.Rand
	skew atomic.Int64 // clock offset in ns
	seq  int64
	// journal ids this device created (committed).
	journal []string
}

func openDevice(t *testing.T, name, path, url string, seed uint64, skew time.Duration) *device {
	d := &device{name: name, path: path, rng: rand.New(rand.NewPCG(seed, 7))}
	d.skew.Store(int64(skew))
	db, err := localdb.OpenWith(context.Background(), path, registry(), localdb.Options{
		Now: func() time.Time { return time.Now().Add(time.Duration(d.skew.Load())) },
	})
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	d.db = db
	api := client.New(url, client.Options{Token: token, Timeout: 10 * time.Second})
	d.co = coordinator.New(db, api, coordinator.Options{
		PushBatchSize: 7, PullBatchSize: 11, Logger: quiet,
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxElapsed: 3 * time.Second,
	})
	return d
}

func (d *device) close() {
	d.co.Close()
	d.db.Close()
}

// op performs one random local write. Expected failures (a row deleted
// meanwhile) are not errors.
func (d *device) op(ctx context.Context) error {
	pick := func(table string) string { // a random live row, chosen by the seeded generator
		var n int
		if err := d.db.SQL().QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE _deleted = 0`, table)).Scan(&n); err != nil || n == 0 {
			return ""
		}
		var id string
		err := d.db.SQL().QueryRowContext(ctx, fmt.Sprintf(`SELECT id FROM %s WHERE _deleted = 0 ORDER BY id LIMIT 1 OFFSET ?`, table), d.rng.IntN(n)).Scan(&id)
		if err != nil {
			return ""
		}
		return id
	}
	switch x := d.rng.IntN(100); {
	case x < 18:
		a := Account{Name: fmt.Sprintf("%s-acct-%d", d.name, d.rng.IntN(1000)), Balance: int64(d.rng.IntN(100))}
		return d.db.Save(ctx, &a)
	case x < 36:
		id := pick("accounts")
		if id == "" {
			return nil
		}
		var a Account
		if err := d.db.Get(ctx, &a, id); err != nil {
			return ignoreNotFound(err)
		}
		a.Name = fmt.Sprintf("%s-renamed-%d", d.name, d.rng.IntN(1000))
		a.Balance += int64(d.rng.IntN(10))
		return d.db.Save(ctx, &a)
	case x < 42: // delete a parent, whose children others may be editing
		id := pick("accounts")
		if id == "" {
			return nil
		}
		return ignoreNotFound(d.db.Delete(ctx, &Account{ID: id}))
	case x < 62:
		id := pick("accounts")
		if id == "" {
			return nil
		}
		note := "n"
		e := Entry{AccountID: id, Amount: float64(d.rng.IntN(10000)) / 100, Note: &note}
		return d.db.Save(ctx, &e)
	case x < 72: // plain SQL, tracked by triggers
		id := pick("entries")
		if id == "" {
			return nil
		}
		_, err := d.db.SQL().ExecContext(ctx, `UPDATE entries SET amount = amount + 1 WHERE id = ?`, id)
		return err
	case x < 77:
		id := pick("entries")
		if id == "" {
			return nil
		}
		return ignoreNotFound(d.db.Delete(ctx, &Entry{ID: id}))
	case x < 82: // plain SQL insert of a parent
		_, err := d.db.SQL().ExecContext(ctx, `INSERT INTO accounts (id, name, balance) VALUES (?, ?, ?)`,
			fmt.Sprintf("%s-sql-%d-%d", d.name, d.seq, d.rng.IntN(1_000_000)), "via sql", 1)
		d.seq++
		return err
	default:
		d.seq++
		j := Journal{ID: fmt.Sprintf("%s-j%d", d.name, d.seq), Device: d.name, Seq: d.seq}
		if err := d.db.Save(ctx, &j); err != nil {
			return err
		}
		d.journal = append(d.journal, j.ID)
		return nil
	}
}

func ignoreNotFound(err error) error {
	if errors.Is(err, localdb.ErrNotFound) {
		return nil
	}
	return err
}

// syncTolerant runs SyncNow; under faults, failures are expected.
func (d *device) syncTolerant(ctx context.Context) {
	d.co.SyncNow(ctx)
}

func TestSimulation(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	ops := *opsFlag
	if *soakFlag {
		ops = max(ops, 100_000)
	}
	t.Logf("seed %d: replay with go test ./sim -run TestSimulation -sim.seed=%d -sim.ops=%d -sim.devices=%d -v",
		seed, seed, ops, *devicesFlag)
	defer func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: replay with go test ./sim -run TestSimulation -sim.seed=%d -sim.ops=%d -sim.devices=%d -v",
				seed, seed, ops, *devicesFlag)
		}
	}()
	ctx := context.Background()
	dir := t.TempDir()
	reg := registry()
	up := startUpstream(t, filepath.Join(dir, "server.db"), reg)
	var upMu sync.Mutex
	defer func() {
		upMu.Lock()
		up.close()
		upMu.Unlock()
	}()
	proxy := faultproxy.New(up.hs.URL, seed)
	defer proxy.Close()
	for f, rate := range map[faultproxy.Fault]float64{
		faultproxy.DropRequest: 0.03, faultproxy.DropResponse: 0.03, faultproxy.Duplicate: 0.03,
		faultproxy.Delay: 0.05, faultproxy.Status500: 0.02, faultproxy.Status503: 0.02,
		faultproxy.Status429: 0.002, faultproxy.Reset: 0.02, faultproxy.Truncate: 0.02,
	} {
		proxy.SetRate(f, rate)
	}
	proxy.Enable(true)

	// Devices: one an hour ahead, one whose clock jumps back halfway.
	n := *devicesFlag
	devs := make([]*device, n)
	for i := range devs {
		var skew time.Duration
		if i == 0 {
			skew = time.Hour
		}
		devs[i] = openDevice(t, fmt.Sprintf("d%d", i), filepath.Join(dir, fmt.Sprintf("d%d.db", i)), proxy.URL(), seed+uint64(i), skew)
	}
	defer func() {
		for _, d := range devs {
			d.close()
		}
	}()

	// The child-process device, killed in the middle of a push and of a
	// pull, then reopened here.
	childPath := filepath.Join(dir, "child.db")
	childJournal := runKilledChild(t, childPath, proxy.URL(), seed)

	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n*2)
	perDevice := ops / n
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perDevice {
				if err := d.op(ctx); err != nil {
					errs <- fmt.Errorf("%s op %d: %w", d.name, k, err)
					return
				}
				done.Add(1)
				if d.rng.IntN(8) == 0 {
					d.syncTolerant(ctx)
				}
				if i == 1 && k == perDevice/2 {
					d.skew.Store(int64(-10 * time.Minute)) // the clock jumps back
				}
			}
		}()
		// A second goroutine calls SyncNow concurrently (coalesced).
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed+uint64(i), 99)) // d.rng belongs to the other goroutine
			for range perDevice / 10 {
				d.syncTolerant(ctx)
				time.Sleep(time.Duration(r.IntN(5)) * time.Millisecond)
			}
		}()
	}
	// Restart the server on its file halfway through.
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		deadline := time.Now().Add(5 * time.Minute)
		for done.Load() < int64(ops/2) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		upMu.Lock()
		defer upMu.Unlock()
		up.close()
		up = startUpstream(t, up.path, reg)
		proxy.SetUpstream(up.hs.URL)
	}()
	wg.Wait()
	<-restarted
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	proxy.Enable(false)

	child := openDevice(t, "child", childPath, proxy.URL(), seed+99, 0)
	defer child.close()
	all := append(devs, child)

	// Every device syncs twice, in turn, with the faults off (G6).
	for round := range 2 {
		for _, d := range all {
			if _, err := d.co.SyncNow(ctx); err != nil {
				t.Fatalf("final sync %d of %s: %v", round, d.name, err)
			}
		}
	}
	checkOracle(t, ctx, all, up, childJournal)
	counts := proxy.Counts()
	var faults int64
	for _, c := range counts {
		faults += c
	}
	conflicts := 0
	for _, d := range all {
		log, _ := d.db.Conflicts(ctx)
		conflicts += len(log)
	}
	t.Logf("ops %d, devices %d+1, faults %d %v, conflicts %d, server restarted once, child killed twice",
		done.Load(), n, faults, counts, conflicts)
}

func checkOracle(t *testing.T, ctx context.Context, all []*device, up *upstream, childJournal []string) {
	t.Helper()
	// G6: every device holds exactly the server's rows.
	for _, d := range all {
		rep, err := d.co.Verify(ctx)
		if err != nil {
			t.Fatalf("verify %s: %v", d.name, err)
		}
		if diff := rep.Differs(); len(diff) > 0 {
			t.Errorf("G6: %s differs from the server in %v: %+v", d.name, diff, rep.Tables)
		}
	}
	// G1, G3: every journal row a device committed is on the server, once.
	srv := up.store.DB()
	have := map[string]bool{}
	rows, err := srv.QueryContext(ctx, `SELECT id FROM journal WHERE _tenant = 'sim'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		if have[id] {
			t.Errorf("G3: journal row %s twice", id)
		}
		have[id] = true
	}
	rows.Close()
	want := append([]string(nil), childJournal...)
	for _, d := range all {
		want = append(want, d.journal...)
	}
	for _, id := range want {
		if !have[id] {
			t.Errorf("G1: journal row %s, committed on its device, never reached the server", id)
		}
	}
	// G4: references hold on every device.
	for _, d := range all {
		var n int
		if err := d.db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM pragma_foreign_key_check`).Scan(&n); err != nil || n != 0 {
			t.Errorf("G4: %s has %d foreign key violations (%v)", d.name, n, err)
		}
	}
	// G7: each conflict was settled as last-writer-wins prescribes.
	for _, d := range all {
		log, err := d.db.Conflicts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range log {
			switch c.Winner {
			case wire.WinnerServer:
				if c.Winning.HLC < c.PushedHLC {
					t.Errorf("G7: %s %s %s: the server's row (%s) won over a later push (%s)", d.name, c.Table, c.RowID, c.Winning.HLC, c.PushedHLC)
				}
			case wire.WinnerClient:
				if c.Lost == nil || c.PushedHLC <= c.Lost.HLC {
					t.Errorf("G7: %s %s %s: the push (%s) won over a later server row (%+v)", d.name, c.Table, c.RowID, c.PushedHLC, c.Lost)
				}
			default:
				t.Errorf("G7: %s: unexpected winner %q", d.name, c.Winner)
			}
		}
	}
}

// runKilledChild runs a device in a child process (this test binary) on
// path, kills it with SIGKILL once in the middle of a push and once in the
// middle of a pull, and returns the journal rows it reported committed.
func runKilledChild(t *testing.T, path, url string, seed uint64) []string {
	t.Helper()
	var journal []string
	for _, phase := range []string{coordinator.PhasePush, coordinator.PhasePull} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildDevice$")
		cmd.Env = append(os.Environ(), "SIM_CHILD_DB="+path, "SIM_CHILD_URL="+url, fmt.Sprint("SIM_CHILD_SEED=", seed))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := false
		deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if id, ok := strings.CutPrefix(line, "journal "); ok {
				journal = append(journal, id)
			}
			if !killed && line == "phase "+phase {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		deadline.Stop()
		cmd.Wait()
		if !killed {
			t.Fatalf("the child device never reached the %s phase", phase)
		}
	}
	return journal
}

// TestChildDevice is the child process of runKilledChild: it writes and
// syncs until killed, reporting phases and journal rows on stdout.
func TestChildDevice(t *testing.T) {
	path := os.Getenv("SIM_CHILD_DB")
	if path == "" {
		t.Skip("runs only as the simulation's child process")
	}
	var seed uint64
	fmt.Sscan(os.Getenv("SIM_CHILD_SEED"), &seed)
	ctx := context.Background()
	d := openDevice(t, "child", path, os.Getenv("SIM_CHILD_URL"), seed+uint64(time.Now().UnixNano()), 0)
	var mu sync.Mutex
	d.co = coordinator.New(d.db, client.New(os.Getenv("SIM_CHILD_URL"), client.Options{Token: token}), coordinator.Options{
		PushBatchSize: 3, PullBatchSize: 3, Logger: quiet, MaxElapsed: 5 * time.Second, InitialBackoff: 10 * time.Millisecond,
		OnProgress: func(p coordinator.Progress) {
			if p.Done > 0 && (p.Phase == coordinator.PhasePush || p.Phase == coordinator.PhasePull) {
				mu.Lock()
				fmt.Println("phase " + p.Phase)
				mu.Unlock()
			}
		},
	})
	for i := 0; i < 100_000; i++ {
		for range 30 {
			before := len(d.journal)
			if err := d.op(ctx); err != nil {
				t.Fatal(err)
			}
			if len(d.journal) > before {
				mu.Lock()
				fmt.Println("journal " + d.journal[len(d.journal)-1])
				mu.Unlock()
			}
		}
		d.co.SyncNow(ctx)
	}
}
