package main

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/dbserver"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/push"
	"github.com/tethersync/tether/server"
)

// bench holds what the scenarios share: the settings, a scratch directory,
// and the databases built once and reused across runs.
type bench struct {
	cfg config
	dir string
	reg *entity.Registry
	seq int

	db           *dbserver.Server     // the PostgreSQL or MySQL server of -store postgres or mysql
	removeDir    bool                 // dir is a temporary one, removed by close
	base         map[int]float64      // rows -> baseline rows/s
	templates    map[int]string       // rows -> closed device db with that many dirty rows
	servers      map[int]*benchServer // rows -> running server holding that many rows
	scopedTpl    string               // closed device db holding the scoped tenant's rows, dirty
	isoTemplates []string             // closed device dbs of the isolation scenario's tenant A, dirty
}

func (b *bench) path(name string) string {
	b.seq++
	return filepath.Join(b.dir, fmt.Sprintf("%03d-%s.db", b.seq, name))
}

func (b *bench) close() {
	for _, s := range b.servers {
		s.Close()
	}
	if b.db != nil {
		b.db.Stop()
	}
	if b.removeDir {
		os.RemoveAll(b.dir)
	}
}

// template returns a closed device database with n dirty rows.
func (b *bench) template(ctx context.Context, n int) (string, error) {
	if p, ok := b.templates[n]; ok {
		return p, nil
	}
	p := b.path(fmt.Sprintf("template-%d", n))
	db, err := openDevice(ctx, p, "http://127.0.0.1:1", b.reg, deviceOptions{batch: b.cfg.batch})
	if err != nil {
		return "", err
	}
	if err := fill(ctx, db.db, n, uint64(n)); err != nil {
		db.Close()
		return "", err
	}
	if err := db.Close(); err != nil {
		return "", err
	}
	b.templates[n] = p
	return p, nil
}

// server returns a running server that holds n rows, pushed by a device.
func (b *bench) server(ctx context.Context, n int) (*benchServer, error) {
	if s, ok := b.servers[n]; ok {
		return s, nil
	}
	s, d, _, err := b.pushRun(ctx, n, deviceOptions{batch: b.cfg.batch})
	if err != nil {
		return nil, err
	}
	d.Close()
	b.servers[n] = s
	return s, nil
}

// pushRun pushes a copy of the n-row template into a new server, and
// returns the server and the device, both open, and the time the push took
// from the first batch to the committed session.
func (b *bench) pushRun(ctx context.Context, n int, o deviceOptions) (*benchServer, *device, time.Duration, error) {
	tpl, err := b.template(ctx, n)
	if err != nil {
		return nil, nil, 0, err
	}
	devPath := b.path("push-device")
	if err := copyFile(devPath, tpl); err != nil {
		return nil, nil, 0, err
	}
	srv, err := startServer(b.openStore(b.path("server")))
	if err != nil {
		return nil, nil, 0, err
	}
	d, err := openDevice(ctx, devPath, srv.URL, b.reg, o)
	if err != nil {
		srv.Close()
		return nil, nil, 0, err
	}
	if _, err := d.api.RegisterDevice(ctx, d.db.DeviceID(), "", nil); err != nil {
		d.Close()
		srv.Close()
		return nil, nil, 0, err
	}
	start := time.Now()
	res, err := push.New(d.db.Syncer(), d.api, push.Options{BatchSize: o.batch}).Push(ctx)
	took := time.Since(start)
	if err == nil && res.Rows["items"] != n {
		err = fmt.Errorf("pushed %d rows, want %d", res.Rows["items"], n)
	}
	if err != nil {
		d.Close()
		srv.Close()
		return nil, nil, 0, fmt.Errorf("push %d rows: %w", n, err)
	}
	return srv, d, took, nil
}

// measurePush times pushing n rows into an empty server.
func (b *bench) measurePush(ctx context.Context, n int) (time.Duration, error) {
	return b.timePushes(ctx, n, true)
}

// timePushes times -runs pushes of n rows into an empty server, and
// returns the median; with keep, the first run's server is kept for the
// pull scenarios.
func (b *bench) timePushes(ctx context.Context, n int, keep bool) (time.Duration, error) {
	var took []time.Duration
	for range b.cfg.runs {
		srv, d, t, err := b.pushRun(ctx, n, deviceOptions{batch: b.cfg.batch})
		if err != nil {
			return 0, err
		}
		took = append(took, t)
		d.Close()
		if _, ok := b.servers[n]; keep && !ok {
			b.servers[n] = srv // kept for the pull scenarios
		} else {
			srv.Close()
		}
	}
	return median(took), nil
}

// measurePull times a first sync of a fresh device from a server holding
// n rows.
func (b *bench) measurePull(ctx context.Context, n int) (time.Duration, error) {
	srv, err := b.server(ctx, n)
	if err != nil {
		return 0, err
	}
	var took []time.Duration
	for range b.cfg.runs {
		d, err := openDevice(ctx, b.path("pull-device"), srv.URL, b.reg, deviceOptions{batch: b.cfg.batch})
		if err != nil {
			return 0, err
		}
		start := time.Now()
		rep, err := d.co.SyncNow(ctx)
		took = append(took, time.Since(start))
		d.Close()
		if err != nil {
			return 0, fmt.Errorf("pull %d rows: %w", n, err)
		}
		if rep.Pulled["items"] != n {
			return 0, fmt.Errorf("pulled %d rows, want %d", rep.Pulled["items"], n)
		}
	}
	return median(took), nil
}

// measureSyncNow times SyncNow on a device that holds n synced rows, after
// changing `changed` of them (0 for a no-op sync).
func (b *bench) measureSyncNow(ctx context.Context, n, changed, runs int) (time.Duration, error) {
	srv, err := b.server(ctx, n)
	if err != nil {
		return 0, err
	}
	d, err := openDevice(ctx, b.path("sync-device"), srv.URL, b.reg, deviceOptions{batch: b.cfg.batch})
	if err != nil {
		return 0, err
	}
	defer d.Close()
	if _, err := d.co.SyncNow(ctx); err != nil {
		return 0, err
	}
	var took []time.Duration
	for round := range runs {
		if changed > 0 {
			if err := touch(ctx, d.db, changed, round); err != nil {
				return 0, err
			}
		}
		start := time.Now()
		rep, err := d.co.SyncNow(ctx)
		took = append(took, time.Since(start))
		if err != nil {
			return 0, err
		}
		if rep.Pushed["items"] != changed {
			return 0, fmt.Errorf("SyncNow pushed %d rows, want %d", rep.Pushed["items"], changed)
		}
	}
	return median(took), nil
}

// measureBaseline times inserting n rows of the same shape with plain
// go-sqlite3: one prepared statement, one transaction.
func (b *bench) measureBaseline(ctx context.Context, n int) (time.Duration, error) {
	var took []time.Duration
	for range b.cfg.runs {
		r := rand.New(rand.NewPCG(uint64(n), 2))
		items := make([]Item, n)
		for i := range items {
			items[i] = newItem(r, i)
		}
		db, err := sql.Open("sqlite3", b.path("baseline"))
		if err != nil {
			return 0, err
		}
		_, err = db.ExecContext(ctx, `CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT, category TEXT,
			note TEXT, price REAL, quantity INTEGER, updated_at TEXT, tags TEXT)`)
		if err != nil {
			db.Close()
			return 0, err
		}
		start := time.Now()
		err = baselineInsert(ctx, db, items)
		took = append(took, time.Since(start))
		db.Close()
		if err != nil {
			return 0, fmt.Errorf("baseline: %w", err)
		}
	}
	return median(took), nil
}

func baselineInsert(ctx context.Context, db *sql.DB, items []Item) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	for _, it := range items {
		tags, _ := json.Marshal(it.Tags)
		_, err := stmt.ExecContext(ctx, it.ID, it.Name, it.Category, it.Note, it.Price, it.Quantity,
			it.UpdatedAt.Format(entity.TimeFormat), string(tags))
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}

// wireBytes is the bytes per row that crossed the connections while
// pushing and while pulling n rows.
type wireBytes struct{ push, pull float64 }

func (b *bench) measureWire(ctx context.Context, n int, noGzip bool) (wireBytes, error) {
	o := deviceOptions{batch: b.cfg.batch, noGzip: noGzip}
	srv, d, _, err := b.pushRun(ctx, n, o)
	if err != nil {
		return wireBytes{}, err
	}
	defer srv.Close()
	pushed := d.wire.read.Load() + d.wire.written.Load()
	d.Close()
	p, err := openDevice(ctx, b.path("wire-device"), srv.URL, b.reg, o)
	if err != nil {
		return wireBytes{}, err
	}
	defer p.Close()
	if _, err := p.co.SyncNow(ctx); err != nil {
		return wireBytes{}, err
	}
	pulled := p.wire.read.Load() + p.wire.written.Load()
	return wireBytes{push: float64(pushed) / float64(n), pull: float64(pulled) / float64(n)}, nil
}

// childResult is what a child process reports of its pull.
type childResult struct {
	Rows    int     `json:"rows"`
	Seconds float64 `json:"seconds"`
}

// measureMemory pulls n rows in a child process, and returns the child's
// peak resident set and pull time.
func (b *bench) measureMemory(ctx context.Context, n int) (rssBytes int64, took time.Duration, err error) {
	srv, err := b.server(ctx, n)
	if err != nil {
		return 0, 0, err
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.CommandContext(ctx, exe, "-child-pull", srv.URL, "-child-db", b.path("child-device"),
		"-batch", strconv.Itoa(b.cfg.batch))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("child pull of %d rows: %w", n, err)
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, 0, fmt.Errorf("child pull of %d rows: read its report %q: %w", n, out, err)
	}
	if res.Rows != n {
		return 0, 0, fmt.Errorf("child pulled %d rows, want %d", res.Rows, n)
	}
	rss, ok := maxRSS(cmd.ProcessState)
	if !ok {
		return 0, 0, fmt.Errorf("child pull: no resource usage on this system")
	}
	return rss, time.Duration(res.Seconds * float64(time.Second)), nil
}

// childPull is the child process of measureMemory.
func childPull(ctx context.Context, url, path string, batch int) error {
	d, err := openDevice(ctx, path, url, registry(), deviceOptions{batch: batch})
	if err != nil {
		return err
	}
	defer d.Close()
	start := time.Now()
	rep, err := d.co.SyncNow(ctx)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(childResult{Rows: rep.Pulled["items"], Seconds: time.Since(start).Seconds()})
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// fullSync is what one SyncNow of a device holding local changes did.
type fullSync struct {
	took     time.Duration
	pulled   int   // rows received
	wireRead int64 // bytes read from the connection, headers included
	reported int64 // Report.BytesReceived
}

// measureFullSync times one SyncNow, push and the pull after it, of a
// device holding n local changes, into an empty server (median of runs),
// and counts what came back down.
func (b *bench) measureFullSync(ctx context.Context, n int) (fullSync, error) {
	var runs []fullSync
	for range b.cfg.runs {
		tpl, err := b.template(ctx, n)
		if err != nil {
			return fullSync{}, err
		}
		devPath := b.path("syncnow-device")
		if err := copyFile(devPath, tpl); err != nil {
			return fullSync{}, err
		}
		srv, err := startServer(b.openStore(b.path("server")))
		if err != nil {
			return fullSync{}, err
		}
		d, err := openDevice(ctx, devPath, srv.URL, b.reg, deviceOptions{batch: b.cfg.batch})
		if err != nil {
			srv.Close()
			return fullSync{}, err
		}
		start := time.Now()
		rep, err := d.co.SyncNow(ctx)
		took := time.Since(start)
		d.Close()
		srv.Close()
		if err != nil {
			return fullSync{}, fmt.Errorf("SyncNow with %d local changes: %w", n, err)
		}
		if rep.Pushed["items"] != n {
			return fullSync{}, fmt.Errorf("SyncNow pushed %d rows, want %d", rep.Pushed["items"], n)
		}
		r := fullSync{took: took, wireRead: d.wire.read.Load(), reported: rep.BytesReceived}
		for _, v := range rep.Pulled {
			r.pulled += v
		}
		runs = append(runs, r)
	}
	slices.SortFunc(runs, func(a, b fullSync) int { return cmp.Compare(a.took, b.took) })
	return runs[len(runs)/2], nil
}

// bytesText is a byte count for the table.
func bytesText(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 10<<10:
		return fmt.Sprintf("%.0f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}

// measureSnapshot times a fresh device's first sync through the snapshot
// path a rebuild takes (every page of GET /v1/snapshot, then the pull from
// where it started), from a server holding n rows.
func (b *bench) measureSnapshot(ctx context.Context, n int) (time.Duration, error) {
	srv, err := b.server(ctx, n)
	if err != nil {
		return 0, err
	}
	var took []time.Duration
	for range b.cfg.runs {
		d, err := openDevice(ctx, b.path("snapshot-device"), srv.URL, b.reg, deviceOptions{batch: b.cfg.batch})
		if err != nil {
			return 0, err
		}
		start := time.Now()
		got, err := snapshotSync(ctx, d, b.cfg.batch)
		took = append(took, time.Since(start))
		d.Close()
		if err != nil {
			return 0, fmt.Errorf("snapshot of %d rows: %w", n, err)
		}
		if got != n {
			return 0, fmt.Errorf("the snapshot brought %d rows, want %d", got, n)
		}
	}
	return median(took), nil
}

// snapshotSync is the rebuild a coordinator runs, then its pull.
func snapshotSync(ctx context.Context, d *device, batch int) (int, error) {
	if _, err := d.api.RegisterDevice(ctx, d.db.DeviceID(), "", nil); err != nil {
		return 0, err
	}
	if err := d.db.Syncer().BeginRebuild(ctx); err != nil {
		return 0, err
	}
	got, cursor := 0, ""
	for range 1 << 30 {
		page, err := d.api.Snapshot(ctx, d.db.DeviceID(), cursor, batch)
		if err != nil {
			return got, err
		}
		if _, err := d.db.Syncer().ApplySnapshot(ctx, page.Rows, page.Cursor); err != nil {
			return got, err
		}
		got += len(page.Rows)
		cursor = page.Cursor
		if !page.More {
			if _, err := d.db.Syncer().FinishRebuild(ctx, page.Resume); err != nil {
				return got, err
			}
			break
		}
	}
	_, err := d.co.SyncNow(ctx)
	return got, err
}

// latencyRows is the number of rows the device of the latency scenario
// holds.
const latencyRows = 1000

// linkSync is one SyncNow over a delayed link: how long it took and how
// many requests it made.
type linkSync struct {
	took     time.Duration
	requests int64
}

// measureLatency times SyncNow over a link that adds -rtt to the round trip
// of every request, on a device that already holds the n rows of a fresh
// server (its first sync is not timed): a no-op sync, where nothing
// changed on either side, and the sync of one row newly saved on the
// device. Each is the median of -runs syncs, with the requests that sync
// made.
func (b *bench) measureLatency(ctx context.Context, n int) (noop, oneRow linkSync, err error) {
	srv, seeder, _, err := b.pushRun(ctx, n, deviceOptions{batch: b.cfg.batch})
	if err != nil {
		return linkSync{}, linkSync{}, fmt.Errorf("latency: a server holding %d rows: %w", n, err)
	}
	defer srv.Close()
	seeder.Close()
	d, err := openDevice(ctx, b.path("latency-device"), srv.URL, b.reg, deviceOptions{batch: b.cfg.batch, rtt: b.cfg.rtt})
	if err != nil {
		return linkSync{}, linkSync{}, fmt.Errorf("latency: open the device: %w", err)
	}
	defer d.Close()
	rep, err := d.co.SyncNow(ctx)
	if err != nil {
		return linkSync{}, linkSync{}, fmt.Errorf("latency: first sync of the device: %w", err)
	}
	if rep.Pulled["items"] != n {
		return linkSync{}, linkSync{}, fmt.Errorf("latency: the first sync pulled %d rows, want %d", rep.Pulled["items"], n)
	}
	// timed is one SyncNow and the requests it made.
	timed := func() (linkSync, coordinator.Report, error) {
		before := d.link.requests.Load()
		start := time.Now()
		rep, err := d.co.SyncNow(ctx)
		return linkSync{took: time.Since(start), requests: d.link.requests.Load() - before}, rep, err
	}
	var noops, ones []linkSync
	for range b.cfg.runs {
		s, rep, err := timed()
		if err != nil {
			return linkSync{}, linkSync{}, fmt.Errorf("latency: no-op SyncNow: %w", err)
		}
		if rep.Pushed["items"] != 0 || rep.Pulled["items"] != 0 {
			return linkSync{}, linkSync{}, fmt.Errorf("latency: a no-op SyncNow pushed %d rows and pulled %d, want none",
				rep.Pushed["items"], rep.Pulled["items"])
		}
		noops = append(noops, s)
	}
	r := rand.New(rand.NewPCG(uint64(n), 3))
	for round := range b.cfg.runs {
		it := newItem(r, n+round)
		if err := d.db.Update(ctx, func(tx *localdb.Tx) error { return tx.Save(ctx, &it) }); err != nil {
			return linkSync{}, linkSync{}, fmt.Errorf("latency: save one new row: %w", err)
		}
		s, rep, err := timed()
		if err != nil {
			return linkSync{}, linkSync{}, fmt.Errorf("latency: SyncNow of one new row: %w", err)
		}
		if rep.Pushed["items"] != 1 {
			return linkSync{}, linkSync{}, fmt.Errorf("latency: SyncNow of one new row pushed %d rows, want 1", rep.Pushed["items"])
		}
		ones = append(ones, s)
	}
	return medianSync(noops), medianSync(ones), nil
}

// medianSync returns the sync of median duration.
func medianSync(s []linkSync) linkSync {
	s = slices.Clone(s)
	slices.SortFunc(s, func(a, b linkSync) int { return cmp.Compare(a.took, b.took) })
	return s[len(s)/2]
}

// fleetMaxSyncs bounds the syncs of one fleet device, whatever
// -fleet-duration says.
const fleetMaxSyncs = 100_000

// fleetResult is what a fleet run measured.
type fleetResult struct {
	syncs    int           // SyncNow calls completed in the window, each after saving one new row
	pulled   int           // rows those syncs pulled: the other devices' rows (one user, one tenant)
	elapsed  time.Duration // from the start of the window until the last device stopped
	p50, p99 time.Duration // SyncNow latency
}

// measureFleet runs `devices` devices at once against one fresh, empty
// server, all with the same token (one user of one tenant). Each device has
// its own SQLite file and client, syncs once untimed, and then, in its own
// goroutine, saves one new row and calls SyncNow, over and over, until
// -fleet-duration has passed (after at least one sync, and at most
// fleetMaxSyncs). Any error fails the run. At the end, one device syncs
// once more and checks with the server's digest that the server and it
// hold every row the fleet saved.
func (b *bench) measureFleet(ctx context.Context, devices int) (res fleetResult, err error) {
	// Every device of the fleet is the bench user's: the server's limit
	// of devices per user (100 by default) would refuse the fleet's rest.
	store, err := b.openStore(b.path(fmt.Sprintf("fleet-%d-server", devices)))
	srv, err := startServerWith(store, err, server.Options{Limits: server.Limits{MaxUserDevices: devices + 1}})
	if err != nil {
		return fleetResult{}, fmt.Errorf("fleet of %d devices: start the server: %w", devices, err)
	}
	var devs []*device
	defer func() {
		if cerr := closeFleet(srv, devs); cerr != nil && err == nil {
			err = fmt.Errorf("fleet of %d devices: %w", devices, cerr)
		}
	}()
	if devs, err = b.openFleet(ctx, srv.URL, devices); err != nil {
		return fleetResult{}, fmt.Errorf("fleet of %d devices: %w", devices, err)
	}
	if res, err = b.driveFleet(ctx, devs); err != nil {
		return fleetResult{}, fmt.Errorf("fleet of %d devices: %w", devices, err)
	}
	if err := verifyFleet(ctx, devs[0], res.syncs); err != nil {
		return fleetResult{}, fmt.Errorf("fleet of %d devices: %w", devices, err)
	}
	return res, nil
}

// openFleet opens n devices of the server at url and syncs each once. On
// error it returns the devices it opened, for closeFleet.
func (b *bench) openFleet(ctx context.Context, url string, n int) ([]*device, error) {
	devs := make([]*device, 0, n)
	for i := range n {
		d, err := openDevice(ctx, b.path(fmt.Sprintf("fleet-%d-device-%d", n, i)), url, b.reg, deviceOptions{batch: b.cfg.batch})
		if err != nil {
			return devs, fmt.Errorf("open device %d: %w", i, err)
		}
		devs = append(devs, d)
		if _, err := d.co.SyncNow(ctx); err != nil {
			return devs, fmt.Errorf("first sync of device %d: %w", i, err)
		}
	}
	return devs, nil
}

// closeFleet closes the devices and the server.
func closeFleet(srv *benchServer, devs []*device) error {
	var errs []error
	for i, d := range devs {
		if cerr := d.Close(); cerr != nil {
			errs = append(errs, fmt.Errorf("close device %d: %w", i, cerr))
		}
	}
	if cerr := srv.Close(); cerr != nil {
		errs = append(errs, fmt.Errorf("close the server: %w", cerr))
	}
	return errors.Join(errs...)
}

// fleetDevice is what one device of a fleet did in the window.
type fleetDevice struct {
	lat    []time.Duration // its syncs' latencies
	pulled int             // the rows its syncs pulled
	err    error           // the error that stopped it
}

// driveFleet runs the devices at once for -fleet-duration and measures
// them.
func (b *bench) driveFleet(ctx context.Context, devs []*device) (fleetResult, error) {
	var (
		wg     sync.WaitGroup
		failed atomic.Bool // a device failed: the others stop after their current sync
	)
	ran := make([]fleetDevice, len(devs))
	start := time.Now()
	deadline := start.Add(b.cfg.fleetDuration)
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ran[i] = runFleetDevice(ctx, d, rand.New(rand.NewPCG(uint64(len(devs)), uint64(i))), i, deadline, &failed)
		}()
	}
	wg.Wait()
	res := fleetResult{elapsed: time.Since(start)}
	var nfailed int
	var first error
	for _, r := range ran {
		if r.err != nil {
			nfailed++
			first = cmp.Or(first, r.err)
		}
	}
	if first != nil {
		return fleetResult{}, fmt.Errorf("%d of them failed; the first: %w", nfailed, first)
	}
	all := make([]time.Duration, 0, len(devs))
	for _, r := range ran {
		all = append(all, r.lat...)
		res.pulled += r.pulled
	}
	slices.Sort(all)
	res.syncs = len(all)
	res.p50, res.p99 = percentile(all, 50), percentile(all, 99)
	return res, nil
}

// runFleetDevice is device i of a fleet: it saves one new row and syncs,
// until deadline or another device failed.
func runFleetDevice(ctx context.Context, d *device, r *rand.Rand, i int, deadline time.Time, failed *atomic.Bool) fleetDevice {
	var run fleetDevice
	for k := range fleetMaxSyncs {
		it := newItem(r, k)
		if err := d.db.Update(ctx, func(tx *localdb.Tx) error { return tx.Save(ctx, &it) }); err != nil {
			run.err = fmt.Errorf("device %d: save of row %d: %w", i, k+1, err)
			failed.Store(true)
			return run
		}
		t0 := time.Now()
		rep, err := d.co.SyncNow(ctx)
		took := time.Since(t0)
		if err != nil {
			run.err = fmt.Errorf("device %d: sync %d, after %s: %w", i, k+1, secs(took), err)
			failed.Store(true)
			return run
		}
		run.lat = append(run.lat, took)
		run.pulled += rep.Pulled["items"]
		if failed.Load() || !time.Now().Before(deadline) {
			return run
		}
	}
	return run
}

// verifyFleet checks, after a fleet's syncs of one new row each, that the
// server and device d hold them all. Every saved row was followed by a
// successful sync of its device, so the server holds syncs rows; d pulls
// them all.
func verifyFleet(ctx context.Context, d *device, syncs int) error {
	if _, err := d.co.SyncNow(ctx); err != nil {
		return fmt.Errorf("last sync of device 0: %w", err)
	}
	v, err := d.co.Verify(ctx)
	if err != nil {
		return fmt.Errorf("verify device 0 against the server: %w", err)
	}
	for _, t := range v.Tables {
		if t.Table != "items" {
			continue
		}
		if t.ServerRows != syncs || t.DeviceRows != syncs || t.Pending != 0 || !t.Match {
			return fmt.Errorf("after %d syncs of one new row each, the server holds %d rows, "+
				"device 0 %d (%d pending), digests match: %t", syncs, t.ServerRows, t.DeviceRows, t.Pending, t.Match)
		}
		return nil
	}
	return fmt.Errorf("verify: no items table in %+v", v.Tables)
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted, which is
// not empty, by nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	k := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(k, 1), len(sorted))-1]
}
