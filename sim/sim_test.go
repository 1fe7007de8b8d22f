// Package sim is a randomized simulation of many devices syncing through a
// fault-injecting proxy with one server, checking guarantees G1-G7, G11,
// G12 and G13 of DESIGN.md once the faults stop: devices of two app
// versions at once, a table per conflict strategy (last-writer-wins,
// merge-columns, a custom resolver) and both reference policies, three
// levels deep; tombstones purged all along, devices away for longer than
// the server counts them active and restored from backups (absence_test.go).
// It is seeded: a failure prints the seed and the command that replays it.
// TestScopes (scopes_test.go) is the simulation of scopes (G15): people's
// devices that hold only what their person may see, a back office that
// grants and revokes teams, and writes that must be refused.
//
//	go test ./sim                                 # the default run, under a minute
//	go test ./sim -sim.seed=42 -v                 # replay a seed
//	go test ./sim -run TestSimulation -sim.soak -timeout 60m -v   # at least 100,000 operations
//	go test ./sim -run 'TestScopes$' -sim.scopes-ops=20000 -sim.scopes-activity=2s -timeout 60m -v  # a soak with scopes
package sim

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
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
	"github.com/tethersync/tether/internal/testkit"
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
	// The two sub-checks the simulation found failing in the library
	// (docs/testing.md, "The simulation"), off by default, each with its reproducer.
	strictRebuilds = flag.Bool("sim.strict-rebuilds", false, "fail on rebuilds that look needless (of devices the server counted active at every sweep), which the oracle's timing can misjudge; logged otherwise")
	strictFK       = flag.Bool("sim.strict-fk", true, "fail on foreign key violations of rebuilt devices caused by pulled tombstones of children whose parent they never held (a bug the simulation found, fixed), and run TestRebuiltDeviceForeignKeys")
	activity       = flag.Duration("sim.activity", 2*time.Second, "how long the server counts a device active after it last synced (Limits.DeviceActivity)")
)

// The schema, three levels deep, one strategy per table:
//
//	accounts (last-writer-wins)  <- entries.account_id (restore, the default)
//	entries  (merge-columns)     <- notes.entry_id     (cascade)
//	notes    (a custom resolver)
//	journal  (last-writer-wins, insert only)
//
// Two app versions run at once: version 2 (the server's schema) has
// accounts.region, which version 1 lacks.

// Account is a parent row, as version 2 of the app declares it.
type Account struct {
	entity.Meta `sync:"accounts,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Balance     int64  `db:"balance"`
	Region      string `db:"region"` // version 2 only
}

// AccountV1 is the same table as version 1 of the app declares it: it
// does not know region.
type AccountV1 struct {
	entity.Meta `sync:"accounts,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Balance     int64  `db:"balance"`
}

// Entry is a child row of an account; a deleted account a live entry
// references comes back (restore). Its conflicts merge columns.
type Entry struct {
	entity.Meta `sync:"entries,2"`
	ID          string  `db:"id"`
	AccountID   string  `db:"account_id,ref=accounts"`
	Amount      float64 `db:"amount"`
	Note        *string `db:"note"`
}

// Note is a child row of an entry, deleted with it (cascade). Its
// conflicts go to resolveNote.
type Note struct {
	entity.Meta `sync:"notes,3"`
	ID          string `db:"id"`
	EntryID     string `db:"entry_id,ref=entries,cascade"`
	Text        string `db:"text"`
	Score       int64  `db:"score"`
}

// Journal rows are only ever inserted: every one must reach the server.
type Journal struct {
	entity.Meta `sync:"journal,4"`
	ID          string `db:"id"`
	Device      string `db:"device"`
	Seq         int64  `db:"seq"`
}

// registry returns the schema of app version 2 (the server's) or 1.
func registry(v2 bool) *entity.Registry {
	reg := entity.NewRegistry()
	var acct any = AccountV1{}
	if v2 {
		acct = Account{}
	}
	if err := reg.Register(acct, Entry{}, Note{}, Journal{}); err != nil {
		panic(err)
	}
	return reg
}

// The tables' conflict rules (G7).
const (
	mergeTable  = "entries"
	customTable = "notes"
)

// serverOptions sets the tables' strategies: last-writer-wins by default,
// merge-columns on entries and resolveNote on notes; and a device activity
// of -sim.activity, so that tombstones are purged within the run. The
// schedule sweeps (world.sweepLoop), not the server: the oracle must know
// when each sweep ran.
func serverOptions() server.Options {
	return server.Options{
		Auth: tokens, Logger: quiet,
		Strategies:    map[string]server.Strategy{mergeTable: server.MergeColumns},
		Resolvers:     map[string]server.ResolveFunc{customTable: resolveNote},
		Limits:        simLimits(),
		SweepInterval: -1,
	}
}

func simLimits() server.Limits { return server.Limits{DeviceActivity: *activity} }

// resolveNote is the custom rule of notes: a delete against an update goes
// to the later clock stamp; two updates merge, keeping the larger score and
// the text of the later stamp.
func resolveNote(_ context.Context, c server.Conflict) (server.Resolution, error) {
	if c.Server.Deleted || c.Pushed.Deleted {
		if c.Pushed.HLC > c.Server.HLC {
			return server.Resolution{Winner: wire.WinnerClient}, nil
		}
		return server.Resolution{Winner: wire.WinnerServer}, nil
	}
	ss, err := toInt(c.Server.Values["score"])
	if err != nil {
		return server.Resolution{}, fmt.Errorf("server score: %w", err)
	}
	ps, err := toInt(c.Pushed.Values["score"])
	if err != nil {
		return server.Resolution{}, fmt.Errorf("pushed score: %w", err)
	}
	vals := maps.Clone(c.Server.Values)
	vals["score"] = max(ss, ps)
	if c.Pushed.HLC > c.Server.HLC {
		vals["text"] = c.Pushed.Values["text"]
	}
	return server.Resolution{Winner: wire.WinnerMerged, Values: vals}, nil
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case float64:
		return int64(x), nil
	case json.Number:
		return x.Int64()
	}
	return 0, fmt.Errorf("not a number: %T %v", v, v)
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
	store, err := sqlitestore.Open(path, reg.Schema(), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	handler, err := server.New(store, serverOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { handler.Close() })
	if err := recordDeletes(context.Background(), store.DB()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(handler)
	return &upstream{path: path, reg: reg, store: store, hs: hs}
}

func (u *upstream) close() {
	u.hs.CloseClientConnections()
	u.hs.Close()
	u.store.Close()
}

// regions tracks what the devices of version 2 wrote to accounts.region,
// the column version 1 does not know (G11).
type regions struct {
	mu sync.Mutex
	// written holds, per account, every region a version-2 device wrote.
	written map[string]map[string]bool
	// held holds, per account, a non-empty region the server held at some
	// point: seen on a version-2 device in a clean row. Every version-2
	// write sets a non-empty region and version 1 never writes it, so the
	// server must hold a non-empty region for these rows to the end.
	held map[string]string
}

func newRegions() *regions {
	return &regions{written: map[string]map[string]bool{}, held: map[string]string{}}
}

// device is a simulated device in this process.
type device struct {
	name string
	path string
	url  string
	id   string // its device id, kept across reopening and restores
	v2   bool   // app version 2 (accounts.region), else 1
	// syncMu is held for reading by every sync, and for writing while the
	// device is away or its database is reopened (db and co change).
	syncMu sync.RWMutex
	db     *localdb.DB
	co     *coordinator.Coordinator
	rng    *rand.Rand
	skew   atomic.Int64 // clock offset in ns
	seq    int64
	// journal ids this device created (committed), those of them written
	// while it was away, and those in its backup file.
	journal       []string
	awayJournal   map[string]bool
	backupJournal map[string]bool
	hist          *history // the rebuilds (nil in the child process)
	// regions is shared by the version-2 devices; pending (guarded by
	// regions.mu) maps the accounts whose region this device wrote and
	// has not yet seen clean to the number of that write.
	regions *regions
	pending map[string]int64
	writes  int64
	// colsMu orders the entry writes with what follows: changed holds,
	// per entry, the columns this device's writes since the row was last
	// seen clean may have changed (a superset of what its push says it
	// changed); merges keeps, per merge-columns conflict ("id@winning
	// stamp"), that set as it stood when the answer came.
	colsMu  sync.Mutex
	changed map[string]map[string]bool
	merges  map[string]map[string]bool
}

func openDevice(t *testing.T, name, path, url string, seed uint64, skew time.Duration, v2 bool, rg *regions, hist *history) *device {
	d := &device{name: name, path: path, url: url, v2: v2, rng: rand.New(rand.NewPCG(seed, 7)), regions: rg, pending: map[string]int64{},
		changed: map[string]map[string]bool{}, merges: map[string]map[string]bool{}, awayJournal: map[string]bool{}, hist: hist}
	d.skew.Store(int64(skew))
	if err := d.open(); err != nil {
		t.Fatal(err)
	}
	return d
}

// open opens d's database and coordinator.
func (d *device) open() error {
	db, err := localdb.OpenWith(context.Background(), d.path, registry(d.v2), localdb.Options{
		Now: func() time.Time { return time.Now().Add(time.Duration(d.skew.Load())) },
	})
	if err != nil {
		return fmt.Errorf("open %s: %w", d.name, err)
	}
	d.db = db
	if d.id == "" { // kept by reopening and restores: written once
		d.id = db.DeviceID()
	}
	api := client.New(d.url, client.Options{Token: token, Timeout: 10 * time.Second})
	opts := coordinator.Options{
		PushBatchSize: 7, PullBatchSize: 11, Logger: quiet,
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxElapsed: 3 * time.Second,
	}
	// Once a push is acknowledged, and once a sync is done, the rows this
	// device wrote that are clean hold what the server held.
	opts.OnProgress = func(p coordinator.Progress) {
		if (p.Phase == coordinator.PhasePull && p.Done == 0) || p.Phase == coordinator.PhaseDone {
			d.observeRegions(context.Background())
			d.observeEntries(context.Background())
		}
	}
	opts.OnConflict = func(c coordinator.Conflict) {
		if c.Table != mergeTable || c.Strategy != string(server.MergeColumns) {
			return
		}
		d.colsMu.Lock()
		d.merges[c.ID+"@"+c.Winner.HLC] = maps.Clone(d.changed[c.ID])
		d.colsMu.Unlock()
	}
	opts.OnSync = func(rep coordinator.Report, _ error) {
		if rep.Rebuilt && d.hist != nil {
			end := time.Now()
			d.hist.rebuilt(d.id, d.name, end.Add(-rep.Duration), end)
		}
	}
	d.co = coordinator.New(db, api, opts)
	return nil
}

func (d *device) close() {
	d.co.Close()
	d.db.Close()
}

// wroteRegion records that this device committed region to account id.
func (d *device) wroteRegion(id, region string) {
	rg := d.regions
	if rg == nil {
		return
	}
	rg.mu.Lock()
	defer rg.mu.Unlock()
	if rg.written[id] == nil {
		rg.written[id] = map[string]bool{}
	}
	rg.written[id][region] = true
	d.writes++
	d.pending[id] = d.writes
}

// observeRegions looks at the accounts whose region this device wrote: a
// clean one holds a row the server held (its acknowledged push, the
// winner of a conflict, or a pulled row), so a non-empty region there was
// on the server.
func (d *device) observeRegions(ctx context.Context) {
	rg := d.regions
	if rg == nil {
		return
	}
	rg.mu.Lock()
	ids := maps.Clone(d.pending)
	rg.mu.Unlock()
	for id, n := range ids {
		var dirty int
		var region sql.NullString
		err := d.db.SQL().QueryRowContext(ctx, `SELECT _dirty, region FROM accounts WHERE id = ?`, id).Scan(&dirty, &region)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			continue // e.g. closed at the end: looked at again later
		}
		if err == nil && dirty != 0 {
			continue
		}
		rg.mu.Lock()
		if err == nil && region.String != "" {
			rg.held[id] = region.String
		}
		if d.pending[id] == n {
			delete(d.pending, id)
		}
		rg.mu.Unlock()
	}
}

// writeEntry runs write, which may change cols of an entry, and records
// them, in the order of the sync's observations.
func (d *device) writeEntry(write func() (id string, err error), cols ...string) error {
	d.colsMu.Lock()
	defer d.colsMu.Unlock()
	id, err := write()
	if id != "" {
		if d.changed[id] == nil {
			d.changed[id] = map[string]bool{}
		}
		for _, c := range cols {
			d.changed[id][c] = true
		}
	}
	return err
}

// observeEntries forgets the changed columns of the entries now clean.
func (d *device) observeEntries(ctx context.Context) {
	d.colsMu.Lock()
	defer d.colsMu.Unlock()
	for id := range d.changed {
		var dirty int
		err := d.db.SQL().QueryRowContext(ctx, `SELECT _dirty FROM entries WHERE id = ?`, id).Scan(&dirty)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && dirty == 0) {
			delete(d.changed, id)
		}
	}
}

// newRegion returns a region no device wrote before.
func (d *device) newRegion() string {
	d.seq++
	return fmt.Sprintf("%s-region-%d", d.name, d.seq)
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
	case x < 14:
		name, balance := fmt.Sprintf("%s-acct-%d", d.name, d.rng.IntN(1000)), int64(d.rng.IntN(100))
		if !d.v2 {
			return d.db.Save(ctx, &AccountV1{Name: name, Balance: balance})
		}
		a := Account{Name: name, Balance: balance, Region: d.newRegion()}
		if err := d.db.Save(ctx, &a); err != nil {
			return err
		}
		d.wroteRegion(a.ID, a.Region)
		return nil
	case x < 28: // version 1 edits a row whose region it does not know
		id := pick("accounts")
		if id == "" {
			return nil
		}
		name, add := fmt.Sprintf("%s-renamed-%d", d.name, d.rng.IntN(1000)), int64(d.rng.IntN(10))
		if !d.v2 {
			var a AccountV1
			if err := d.db.Get(ctx, &a, id); err != nil {
				return ignoreNotFound(err)
			}
			a.Name, a.Balance = name, a.Balance+add
			return d.db.Save(ctx, &a)
		}
		var a Account
		if err := d.db.Get(ctx, &a, id); err != nil {
			return ignoreNotFound(err)
		}
		a.Name, a.Balance, a.Region = name, a.Balance+add, d.newRegion()
		if err := d.db.Save(ctx, &a); err != nil {
			return err
		}
		d.wroteRegion(a.ID, a.Region)
		return nil
	case x < 34: // delete a parent, whose children others may be editing
		id := pick("accounts")
		if id == "" {
			return nil
		}
		if !d.v2 {
			return ignoreNotFound(d.db.Delete(ctx, &AccountV1{ID: id}))
		}
		// Version 2 writes a region with every write, deletes too: a
		// tombstone's values come back when a reference restores it.
		region := d.newRegion()
		err := d.db.Update(ctx, func(tx *localdb.Tx) error {
			var a Account
			if err := tx.Get(ctx, &a, id); err != nil {
				return err
			}
			a.Region = region
			if err := tx.Save(ctx, &a); err != nil {
				return err
			}
			return tx.Delete(ctx, &a)
		})
		if err == nil {
			d.wroteRegion(id, region)
		}
		return ignoreNotFound(err)
	case x < 48: // a child, maybe of a parent another device is deleting
		id := pick("accounts")
		if id == "" {
			return nil
		}
		note := "n"
		e := Entry{AccountID: id, Amount: float64(d.rng.IntN(10000)) / 100, Note: &note}
		return d.writeEntry(func() (string, error) {
			err := d.db.Save(ctx, &e)
			return e.ID, err
		}, "account_id", "amount", "note")
	case x < 55: // plain SQL, tracked by triggers: one column (merge-columns)
		id := pick("entries")
		if id == "" {
			return nil
		}
		return d.writeEntry(func() (string, error) {
			_, err := d.db.SQL().ExecContext(ctx, `UPDATE entries SET amount = amount + 1 WHERE id = ?`, id)
			return id, err
		}, "amount")
	case x < 60: // another column of an entry, through the store
		id := pick("entries")
		if id == "" {
			return nil
		}
		note := fmt.Sprintf("%s-note-%d", d.name, d.rng.IntN(1000))
		return ignoreNotFound(d.writeEntry(func() (string, error) {
			return id, d.db.Update(ctx, func(tx *localdb.Tx) error { // no pull between read and write
				var e Entry
				if err := tx.Get(ctx, &e, id); err != nil {
					return err
				}
				e.Note = &note
				return tx.Save(ctx, &e)
			})
		}, "note"))
	case x < 64: // delete a middle row: its notes go with it on the server
		id := pick("entries")
		if id == "" {
			return nil
		}
		return ignoreNotFound(d.db.Delete(ctx, &Entry{ID: id}))
	case x < 73: // a grandchild, maybe of an entry another device is deleting
		id := pick("entries")
		if id == "" {
			return nil
		}
		n := Note{EntryID: id, Text: fmt.Sprintf("%s-text-%d", d.name, d.rng.IntN(1000)), Score: int64(d.rng.IntN(100))}
		return d.db.Save(ctx, &n)
	case x < 77:
		id := pick("notes")
		if id == "" {
			return nil
		}
		var n Note
		if err := d.db.Get(ctx, &n, id); err != nil {
			return ignoreNotFound(err)
		}
		n.Text, n.Score = fmt.Sprintf("%s-edit-%d", d.name, d.rng.IntN(1000)), int64(d.rng.IntN(100))
		return d.db.Save(ctx, &n)
	case x < 80:
		id := pick("notes")
		if id == "" {
			return nil
		}
		_, err := d.db.SQL().ExecContext(ctx, `UPDATE notes SET score = score + 1 WHERE id = ?`, id)
		return err
	case x < 83:
		id := pick("notes")
		if id == "" {
			return nil
		}
		return ignoreNotFound(d.db.Delete(ctx, &Note{ID: id}))
	case x < 87: // plain SQL insert of a parent
		id := fmt.Sprintf("%s-sql-%d-%d", d.name, d.seq, d.rng.IntN(1_000_000))
		d.seq++
		if !d.v2 {
			_, err := d.db.SQL().ExecContext(ctx, `INSERT INTO accounts (id, name, balance) VALUES (?, ?, ?)`, id, "via sql", 1)
			return err
		}
		region := d.newRegion()
		_, err := d.db.SQL().ExecContext(ctx, `INSERT INTO accounts (id, name, balance, region) VALUES (?, ?, ?, ?)`, id, "via sql", 1, region)
		if err == nil {
			d.wroteRegion(id, region)
		}
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

// sync runs SyncNow, unless the device is away: then it waits for its
// return.
func (d *device) sync(ctx context.Context) (coordinator.Report, error) {
	d.syncMu.RLock()
	defer d.syncMu.RUnlock()
	return d.co.SyncNow(ctx)
}

// syncTolerant runs sync; under faults, failures are expected.
func (d *device) syncTolerant(ctx context.Context) {
	d.sync(ctx)
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
	start := time.Now()
	ctx := context.Background()
	dir := t.TempDir()
	reg := registry(true)
	w := &world{up: startUpstream(t, filepath.Join(dir, "server.db"), reg), lim: simLimits(), hist: newHistory()}
	defer func() {
		w.mu.Lock()
		w.up.close()
		w.mu.Unlock()
	}()
	proxy := testkit.NewProxy(w.up.hs.URL, seed)
	defer proxy.Close()
	for f, rate := range map[testkit.Fault]float64{
		testkit.DropRequest: 0.03, testkit.DropResponse: 0.03, testkit.Duplicate: 0.03,
		testkit.Delay: 0.05, testkit.Status500: 0.02, testkit.Status503: 0.02,
		testkit.Status429: 0.002, testkit.Reset: 0.02, testkit.Truncate: 0.02,
	} {
		proxy.SetRate(f, rate)
	}
	proxy.Enable(true)

	// Devices: one an hour ahead, one whose clock jumps back halfway; the
	// odd ones (and the child) run app version 1, without accounts.region.
	// d1 and the last one sync all along; the others go away for long and
	// short times, and d2 (more of them in a soak) is restored from a
	// backup of its file.
	n := *devicesFlag
	devs := make([]*device, n)
	rg := newRegions()
	for i := range devs {
		var skew time.Duration
		if i == 0 {
			skew = time.Hour
		}
		devs[i] = openDevice(t, fmt.Sprintf("d%d", i), filepath.Join(dir, fmt.Sprintf("d%d.db", i)), proxy.URL(), seed+uint64(i), skew, i%2 == 0, rg, w.hist)
	}
	defer func() {
		for _, d := range devs {
			d.close()
		}
	}()
	steady := func(i int) bool { return i == 1 || i == n-1 }

	// The child-process device, killed in the middle of a push and of a
	// pull, then away for the rest of the run: it comes back at the end.
	childPath := filepath.Join(dir, "child.db")
	childJournal := runKilledChild(t, childPath, proxy.URL(), seed)

	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n*2+1)
	perDevice := ops / n
	// The schedule sweeps until the first device is done with its
	// operations (from then on, devices stop syncing one by one).
	stopSweeps, sweeperDone := make(chan struct{}), make(chan struct{})
	var stopOnce sync.Once
	go func() {
		defer close(sweeperDone)
		if err := w.sweepLoop(ctx, stopSweeps, devs); err != nil {
			errs <- err
		}
	}()
	for i, d := range devs {
		var events map[int]event
		if !steady(i) {
			events = plan(seed, i, perDevice, *activity)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stopOnce.Do(func() { close(stopSweeps) })
			jumped := false
			for k := 0; k < perDevice; k++ {
				var err error
				switch e := events[k]; e.kind {
				case evLong, evShort:
					e.ops = min(e.ops, perDevice-k)
					var did int
					did, err = d.absent(ctx, w, e, &done)
					k += did
				case evBackup:
					err = d.backup(ctx, w)
				case evRestore:
					err = d.restore(ctx, w)
				}
				if err == nil {
					err = d.op(ctx)
				}
				if err != nil {
					errs <- fmt.Errorf("%s op %d: %w", d.name, k, err)
					return
				}
				done.Add(1)
				if d.rng.IntN(8) == 0 {
					d.syncTolerant(ctx)
				}
				if i == 1 && k >= perDevice/2 && !jumped {
					d.skew.Store(int64(-10 * time.Minute)) // the clock jumps back
					jumped = true
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
		w.mu.Lock()
		defer w.mu.Unlock()
		w.up.close()
		w.up = startUpstream(t, w.up.path, reg)
		proxy.SetUpstream(w.up.hs.URL)
	}()
	wg.Wait()
	<-restarted
	<-sweeperDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	proxy.Enable(false)

	// The child device comes back, with what it typed offline.
	child := openDevice(t, "child", childPath, proxy.URL(), seed+99, 0, false, nil, w.hist)
	defer child.close()
	for range 20 {
		if err := child.op(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range child.journal {
		child.awayJournal[id] = true
	}
	child.syncMu.Lock()
	if err := child.comeBack(ctx, w, "came back after the whole run away"); err != nil {
		t.Fatal(err)
	}
	all := append(devs, child)

	// Every device syncs twice, in turn, with the faults off (G6).
	for round := range 2 {
		for _, d := range all {
			if _, err := d.sync(ctx); err != nil {
				t.Fatalf("final sync %d of %s: %v", round, d.name, err)
			}
		}
	}
	for _, d := range all {
		d.observeRegions(ctx)
	}
	w.hist.mu.Lock()
	purged := maps.Clone(w.hist.purgedAccounts)
	w.hist.mu.Unlock()
	checkOracle(t, ctx, all, w.up, childJournal, rg, purged)
	checkAbsences(t, w.hist, devs, steady)
	counts := proxy.Counts()
	var faults int64
	for _, c := range counts {
		faults += c
	}
	conflicts, byStrategy := 0, map[string]int{}
	for _, d := range all {
		log, _ := d.db.Conflicts(ctx)
		conflicts += len(log)
		for _, c := range log {
			byStrategy[c.Table+"/"+c.Strategy]++
		}
	}
	rg.mu.Lock()
	held := len(rg.held)
	rg.mu.Unlock()
	t.Logf("ops %d, devices %d+1 (%d on app version 1), faults %d %v, open conflicts %d %v, accounts whose region the server held %d, server restarted once, child killed twice, %s",
		done.Load(), n, n/2+1, faults, counts, conflicts, byStrategy, held, time.Since(start).Round(time.Second))
	t.Logf("device activity %s: %s", *activity, w.hist.summary())
}

// checkAbsences checks G13 once every device has settled: no rebuild was
// needless, every device that came back (or was restored) with a cursor
// before the purge horizon was rebuilt, no device that synced all along
// was rebuilt unless the server had counted it inactive, and the schedule
// did purge and rebuild.
func checkAbsences(t *testing.T, h *history, devs []*device, steady func(int) bool) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.errs {
		t.Error(e)
	}
	for id, why := range h.must {
		t.Errorf("G13: device %s %s, and was never rebuilt", id, why)
	}
	for i, d := range devs {
		if steady(i) && h.rebuilds[d.name] > 0 {
			// Needless ones are reported above: the server counted it
			// inactive (a sync retried for longer than DeviceActivity).
			t.Logf("%s, which synced all along, was rebuilt %d times after the server counted it inactive", d.name, h.rebuilds[d.name])
		}
	}
	if h.long >= 3 && (h.purged == 0 || h.pastHorizon == 0) {
		t.Errorf("G13 not exercised: %d long absences, %d tombstones purged, %d returns past the horizon", h.long, h.purged, h.pastHorizon)
	}
}

func checkOracle(t *testing.T, ctx context.Context, all []*device, up *upstream, childJournal []string, rg *regions, purged map[string]bool) {
	t.Helper()
	// G6: every device holds exactly the server's rows; a device of app
	// version 1 compares the columns it has (G11).
	for _, d := range all {
		rep, err := d.co.Verify(ctx)
		if err != nil {
			t.Fatalf("verify %s: %v", d.name, err)
		}
		if diff := rep.Differs(); len(diff) > 0 {
			t.Errorf("G6: %s (app version %d) differs from the server in %v: %+v", d.name, version(d), diff, rep.Tables)
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
	away := map[string]bool{}
	for _, d := range all {
		want = append(want, d.journal...)
		maps.Copy(away, d.awayJournal)
	}
	for _, id := range want {
		switch {
		case have[id]:
		case away[id]: // G13: nothing typed offline is lost
			t.Errorf("G1, G13: journal row %s, committed on its device while it was away, never reached the server", id)
		default:
			t.Errorf("G1: journal row %s, committed on its device, never reached the server", id)
		}
	}
	// G4: references hold on every device.
	for _, d := range all {
		var n int
		// A tombstone of a child whose parent the device never held
		// (pulled after a rebuild) is the known bug of
		// TestRebuiltDeviceForeignKeys: counted, failed with -sim.strict-fk.
		var tomb int
		err := d.db.SQL().QueryRowContext(ctx, `SELECT count(*), coalesce(sum(CASE
			WHEN k."table" = 'notes' THEN (SELECT _deleted FROM notes WHERE rowid = k.rowid)
			WHEN k."table" = 'entries' THEN (SELECT _deleted FROM entries WHERE rowid = k.rowid) END), 0)
			FROM pragma_foreign_key_check AS k`).Scan(&n, &tomb)
		if err != nil || n > tomb || (n > 0 && *strictFK) {
			t.Errorf("G4: %s has %d foreign key violations, %d of them tombstones (%v)", d.name, n, tomb, err)
			fkDetails(t, ctx, d, srv)
		} else if n > 0 {
			t.Logf("G4 (known bug, -sim.strict-fk): %s holds %d tombstones referencing rows it never held", d.name, n)
		}
	}
	// G12: no live row references a deleted or missing one, on any device
	// or on the server.
	for _, d := range all {
		for _, bad := range dangling(t, ctx, d.db.SQL(), "") {
			t.Errorf("G12: on %s, %s", d.name, bad)
		}
	}
	for _, bad := range dangling(t, ctx, srv, "sim") {
		t.Errorf("G12: on the server, %s", bad)
	}
	// G11: no column a device does not know is lost.
	checkRegions(t, ctx, srv, rg, purged)
	// G7: each conflict was settled by its table's rule.
	for _, d := range all {
		log, err := d.db.Conflicts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d.colsMu.Lock()
		merges := d.merges
		d.colsMu.Unlock()
		for _, c := range log {
			changed, known := merges[c.RowID+"@"+c.Winning.HLC]
			if msg := checkConflict(c, changed, known); msg != "" {
				t.Errorf("G7: %s: %s %s (%s, winner %s): %s", d.name, c.Table, c.RowID, c.Strategy, c.Winner, msg)
			}
		}
	}
}

// fkDetails logs the rows of d that break a foreign key, with their parents
// on the server.
func fkDetails(t *testing.T, ctx context.Context, d *device, srv *sql.DB) {
	t.Helper()
	rows, err := d.db.SQL().QueryContext(ctx, `SELECT "table", rowid, parent FROM pragma_foreign_key_check LIMIT 5`)
	if err != nil {
		t.Log(err)
		return
	}
	type bad struct {
		table, parent string
		rowid         int64
	}
	var bads []bad
	for rows.Next() {
		var b bad
		rows.Scan(&b.table, &b.rowid, &b.parent)
		bads = append(bads, b)
	}
	rows.Close()
	col := map[string]string{"entries": "account_id", "notes": "entry_id"}
	for _, b := range bads {
		var id, ref string
		var deleted, dirty int
		err := d.db.SQL().QueryRowContext(ctx, fmt.Sprintf(`SELECT id, %s, _deleted, _dirty FROM %s WHERE rowid = ?`, col[b.table], b.table), b.rowid).Scan(&id, &ref, &deleted, &dirty)
		var sdel sql.NullBool
		var pdel sql.NullBool
		srv.QueryRowContext(ctx, fmt.Sprintf(`SELECT _deleted FROM %s WHERE _tenant = 'sim' AND id = ?`, b.table), id).Scan(&sdel)
		srv.QueryRowContext(ctx, fmt.Sprintf(`SELECT _deleted FROM %s WHERE _tenant = 'sim' AND id = ?`, b.parent), ref).Scan(&pdel)
		t.Logf("G4: on %s, %s %s (deleted %d, dirty %d; on the server: %+v) references %s %s, absent on the device (on the server: %+v) (%v)",
			d.name, b.table, id, deleted, dirty, sdel, b.parent, ref, pdel, err)
	}
}

func version(d *device) int {
	if d.v2 {
		return 2
	}
	return 1
}

// dangling returns the live rows of db that reference a deleted or missing
// row, at most a few; tenant filters a server's rows ("" on a device).
func dangling(t *testing.T, ctx context.Context, db *sql.DB, tenant string) []string {
	t.Helper()
	var out []string
	for _, r := range []struct{ child, col, parent string }{{"entries", "account_id", "accounts"}, {"notes", "entry_id", "entries"}} {
		q := fmt.Sprintf(`SELECT c.id, c.%[2]s, coalesce(p._deleted, -1) FROM %[1]s AS c LEFT JOIN %[3]s AS p ON p.id = c.%[2]s`, r.child, r.col, r.parent)
		if tenant != "" {
			q += ` AND p._tenant = c._tenant WHERE c._tenant = ? AND`
		} else {
			q += ` WHERE ? = '' AND`
		}
		q += ` c._deleted = 0 AND coalesce(p._deleted, 1) != 0 ORDER BY c.id LIMIT 5`
		rows, err := db.QueryContext(ctx, q, tenant)
		if err != nil {
			t.Fatalf("G12 query: %v", err)
		}
		for rows.Next() {
			var id, parent string
			var deleted int
			if err := rows.Scan(&id, &parent, &deleted); err != nil {
				t.Fatal(err)
			}
			state := "deleted"
			if deleted < 0 {
				state = "missing"
			}
			out = append(out, fmt.Sprintf("live %s %s references %s %s, which is %s", r.child, id, r.parent, parent, state))
		}
		rows.Close()
	}
	return out
}

// checkRegions checks accounts.region on the server, the column app
// version 1 does not know: every value is one a version-2 device wrote to
// that row (or the default, for a row no version-2 device wrote); never
// NULL; and a row for which the server once held a non-empty region holds
// one still (every version-2 write sets one; version 1 must not erase it),
// unless it was deleted and its tombstone purged.
func checkRegions(t *testing.T, ctx context.Context, srv *sql.DB, rg *regions, purged map[string]bool) {
	t.Helper()
	rg.mu.Lock()
	defer rg.mu.Unlock()
	rows, err := srv.QueryContext(ctx, `SELECT id, region, _deleted FROM accounts WHERE _tenant = 'sim'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen, errs := map[string]bool{}, 0
	report := func(format string, args ...any) {
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for rows.Next() {
		var id string
		var region sql.NullString
		var deleted bool
		if err := rows.Scan(&id, &region, &deleted); err != nil {
			t.Fatal(err)
		}
		seen[id] = true
		switch {
		case !region.Valid:
			report("G11: server accounts %s (deleted %v): region is NULL", id, deleted)
		case region.String == "" && rg.held[id] != "" && !purged[id]:
			// (A row whose tombstone was purged may come back, pushed
			// again by a device of version 1, without its region: the
			// server no longer has it.)
			report("G11: server accounts %s (deleted %v): region erased; it held %q, written by an app-version-2 device", id, deleted, rg.held[id])
		case region.String != "" && !rg.written[id][region.String]:
			report("G11: server accounts %s (deleted %v): region %q, which no device wrote to it", id, deleted, region.String)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range rg.held {
		if !seen[id] && !purged[id] {
			report("G11: accounts %s, whose region the server held, is missing on the server", id)
		}
	}
	if errs > 10 {
		t.Errorf("G11: %d region errors in all", errs)
	}
}

// checkConflict checks one conflict log entry against its table's rule and
// returns what is wrong, or "". For a merge-columns conflict, changed
// holds, when known, every column the device may have changed.
func checkConflict(c localdb.ConflictRecord, changed map[string]bool, known bool) string {
	// pushed is the version that was pushed, when the device did not edit
	// the row again before the answer.
	pushed := c.Local.HLC == c.PushedHLC
	lwwOrder := func() string {
		switch c.Winner {
		case wire.WinnerServer:
			if c.Winning.HLC < c.PushedHLC {
				return fmt.Sprintf("the server's row (%s) won over a later push (%s)", c.Winning.HLC, c.PushedHLC)
			}
		case wire.WinnerClient:
			if c.Lost == nil || c.PushedHLC <= c.Lost.HLC {
				return fmt.Sprintf("the push (%s) won over a later server row (%+v)", c.PushedHLC, c.Lost)
			}
		default:
			return "unexpected winner"
		}
		return ""
	}
	deleteInvolved := func() bool {
		return c.Winning.Deleted || (c.Lost != nil && c.Lost.Deleted) || !pushed || c.Local.Deleted
	}
	same := func(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) }
	if c.Strategy == "reference" {
		// G12: the server undid a delete (restore: accounts, which entries
		// reference) or deleted a row with its parent (cascade: notes).
		switch {
		case c.Winner != wire.WinnerServer:
			return "a reference entry whose winner is not the server's row"
		case strings.HasPrefix(c.Reason, "brought back"):
			if c.Table != "accounts" || c.Winning.Deleted {
				return fmt.Sprintf("brought back, but deleted %v (%s)", c.Winning.Deleted, c.Reason)
			}
		case strings.HasPrefix(c.Reason, "deleted with"):
			if c.Table != customTable || !c.Winning.Deleted {
				return fmt.Sprintf("deleted with its parent, but deleted %v (%s)", c.Winning.Deleted, c.Reason)
			}
		case strings.HasPrefix(c.Reason, "deleted: it references"):
			// Its parent is gone from the server (its tombstone purged):
			// nothing to bring back, the row goes (G12, G13).
			if c.Table == "accounts" || !c.Winning.Deleted {
				return fmt.Sprintf("deleted for a missing parent, but deleted %v (%s)", c.Winning.Deleted, c.Reason)
			}
		default:
			return fmt.Sprintf("unexpected reason %q", c.Reason)
		}
		return ""
	}
	switch c.Table {
	case mergeTable:
		switch c.Strategy {
		case string(server.LastWriterWins): // a delete against an update
			if !deleteInvolved() {
				return "whole-row last-writer-wins on two live rows of a merge-columns table"
			}
			return lwwOrder()
		case string(server.MergeColumns):
			if c.Winner != wire.WinnerMerged || c.Lost == nil {
				return "a merge that did not merge"
			}
			if c.Winning.Deleted || c.Lost.Deleted {
				return "a merge of a deleted row"
			}
			if c.Winning.HLC != max(c.Lost.HLC, c.PushedHLC) {
				return fmt.Sprintf("merged stamp %s, want the later of %s and %s", c.Winning.HLC, c.Lost.HLC, c.PushedHLC)
			}
			if pushed { // every column comes from one side or the other
				for col, v := range c.Winning.Values {
					if !same(v, c.Lost.Values[col]) && !same(v, c.Local.Values[col]) {
						return fmt.Sprintf("merged %s = %v, from neither the server's %v nor the pushed %v", col, v, c.Lost.Values[col], c.Local.Values[col])
					}
					// A column the device did not change keeps the server's value.
					if known && !changed[col] && !same(v, c.Lost.Values[col]) {
						return fmt.Sprintf("merged %s = %v, the device's unchanged (stale) value over the server's %v", col, v, c.Lost.Values[col])
					}
				}
			}
			return ""
		}
	case customTable:
		if c.Strategy != string(server.Custom) {
			break
		}
		if c.Winner != wire.WinnerMerged { // a delete against an update
			if !deleteInvolved() {
				return "the resolver kept one row of two live ones"
			}
			return lwwOrder()
		}
		if c.Lost == nil || c.Lost.Deleted || c.Winning.Deleted {
			return "a merge involving a deleted row"
		}
		ws, err1 := toInt(c.Winning.Values["score"])
		ls, err2 := toInt(c.Lost.Values["score"])
		if err := errors.Join(err1, err2); err != nil {
			return err.Error()
		}
		wantText := c.Lost.Values["text"]
		if pushed {
			ps, err := toInt(c.Local.Values["score"])
			if err != nil {
				return err.Error()
			}
			if ws != max(ls, ps) {
				return fmt.Sprintf("merged score %d, want the larger of %d and %d", ws, ls, ps)
			}
			if c.PushedHLC > c.Lost.HLC {
				wantText = c.Local.Values["text"]
			}
			if !same(c.Winning.Values["text"], wantText) {
				return fmt.Sprintf("merged text %v, want %v (the later stamp's)", c.Winning.Values["text"], wantText)
			}
		} else if ws < ls {
			return fmt.Sprintf("merged score %d below the server's %d", ws, ls)
		}
		if !same(c.Winning.Values["entry_id"], c.Lost.Values["entry_id"]) {
			return "the merge changed entry_id"
		}
		return ""
	default:
		if c.Strategy == string(server.LastWriterWins) {
			return lwwOrder()
		}
	}
	return fmt.Sprintf("strategy %q is not the table's", c.Strategy)
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
	// Named after its process: the journal ids of the two runs differ.
	d := openDevice(t, fmt.Sprintf("child%d", os.Getpid()), path, os.Getenv("SIM_CHILD_URL"), seed+uint64(time.Now().UnixNano()), 0, false, nil, nil)
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
