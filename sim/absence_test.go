package sim

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
)

// Long absences and purges (G13). The server counts a device active for
// Limits.DeviceActivity (-sim.activity, a few hundred milliseconds here)
// after it last registered; the schedule sweeps ten times as often, which
// purges the tombstones every active device has pulled past. Devices go
// away for longer than that while they keep writing locally, come back,
// and must be rebuilt when the horizon passed their cursor; some are
// restored from an older copy of their database file.

// sweepMax bounds the work of one sweep.
const sweepMax = 50

// world is what the schedule shares: the server (restarted halfway), the
// purges, and what the oracles learn of them.
type world struct {
	mu sync.Mutex // guards up
	up *upstream
	// gate orders the sweeps with the returns of devices: a sweep holds
	// it; a device coming back holds it for reading while it syncs and
	// checks that what it had not pushed reached the server, so nothing it
	// pushed is purged meanwhile.
	gate sync.RWMutex
	lim  server.Limits
	hist *history
}

// history records the sweeps, the rebuilds and the absences.
type history struct {
	mu sync.Mutex
	// inactive holds, per device id, the windows [start, end] of the
	// sweeps at which the server may have counted the device inactive (or
	// did not know it yet), and the times it was restored from a backup:
	// the events that may justify a rebuild.
	inactive map[string][][2]time.Time
	// lostPull holds, per device id, the windows of the sweeps at which
	// the server counted it active and the horizon passed its stored
	// cursor (TestLostPullAnswerRebuilds).
	lostPull map[string][][2]time.Time
	// lastRebuild is the start of the sync of each device's last rebuild.
	lastRebuild map[string]time.Time
	// must holds, per device id, why it must be rebuilt: it came back (or
	// was restored) with a cursor before the purge horizon.
	must map[string]string
	// rebuilds counts the rebuilds per device name.
	rebuilds map[string]int
	// lostPullRebuilds counts the rebuilds of devices the server counted
	// active, explained only by a lost pull answer.
	lostPullRebuilds int
	needless         int // rebuilds that look needless, logged (see rebuilt)
	// purgedAccounts holds the accounts whose tombstones were purged.
	purgedAccounts map[string]bool
	errs           []string

	sweeps, purges, purged int
	horizon                int64
	long, short            int // absences
	pastHorizon            int // returns (and restores) with a cursor before the horizon
	checkedReturns         int // returns whose unpushed rows were checked on the server
	uncheckedReturns       int // returns whose sync failed under faults: checked at the end only
	backups, restores      int
	lostToRestore          int // journal rows never pushed, dropped by restoring an older file
	awayJournal            int
	unpushedAccounts       int // accounts unpushed at a return, found on the server after it
}

func newHistory() *history {
	return &history{inactive: map[string][][2]time.Time{}, lastRebuild: map[string]time.Time{},
		lostPull: map[string][][2]time.Time{}, must: map[string]string{}, rebuilds: map[string]int{}, purgedAccounts: map[string]bool{}}
}

func (h *history) errorf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs = append(h.errs, fmt.Sprintf(format, args...))
}

// justify records an event, over [from, to], that may make device id need
// a rebuild.
func (h *history) justify(id string, from, to time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inactive[id] = append(h.inactive[id], [2]time.Time{from, to})
}

// passed records a sweep, over [from, to], after which the horizon passed
// the stored cursor of device id, which it counted active.
func (h *history) passed(id string, from, to time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lostPull[id] = append(h.lostPull[id], [2]time.Time{from, to})
}

// rebuilt records a rebuild of a device in a sync over [start, end]. It is
// needless unless the server may have counted the device inactive at a
// sweep (or the device was restored from a backup) after its last rebuild
// started and before this sync ended: a device that stayed active is never
// rebuilt, the horizon waits for it.
func (h *history) rebuilt(id, name string, start, end time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rebuilds[name]++
	delete(h.must, id)
	last := h.lastRebuild[id]
	within := func(es [][2]time.Time) bool {
		for _, e := range es {
			if e[1].After(last) && e[0].Before(end) {
				return true
			}
		}
		return false
	}
	switch {
	case within(h.inactive[id]):
	case within(h.lostPull[id]):
		h.lostPullRebuilds++
		if *strictRebuilds {
			h.errs = append(h.errs, fmt.Sprintf("G13: %s was rebuilt (sync of %s to %s), though the server counted it active at every sweep since its last rebuild: the horizon passed the cursor it had stored, a position the server recorded it at when it served a pull answer the device never stored (TestLostPullAnswerRebuilds)",
				name, start.Format("15:04:05.000"), end.Format("15:04:05.000")))
		}
	case !*strictRebuilds:
		// The oracle reads the devices' last-seen times just before each
		// sweep; a device can cross the activity window in between, which
		// makes its rebuild look needless. Logged, not failed, unless
		// -sim.strict-rebuilds.
		h.needless++
	default:
		h.errs = append(h.errs, fmt.Sprintf("G13: %s was rebuilt (sync of %s to %s), though the server counted it active at every sweep since its last rebuild, the horizon never passed its stored cursor, and it was not restored from a backup: a needless rebuild",
			name, start.Format("15:04:05.000"), end.Format("15:04:05.000")))
	}
	h.lastRebuild[id] = start
	for _, m := range []map[string][][2]time.Time{h.inactive, h.lostPull} {
		keep := m[id][:0]
		for _, e := range m[id] {
			if e[1].After(start) {
				keep = append(keep, e)
			}
		}
		m[id] = keep
	}
}

// sweepLoop sweeps every tenth of DeviceActivity until stop is closed.
// devs are the devices the schedule runs, registered or not yet.
func (w *world) sweepLoop(ctx context.Context, stop <-chan struct{}, devs []*device) error {
	tick := time.NewTicker(w.lim.DeviceActivity / 10)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		if err := w.sweepOnce(ctx, devs); err != nil {
			return err
		}
	}
}

// sweepOnce runs one sweep and records which devices the server may have
// counted inactive during it: those whose position last moved, before it
// started, longer than DeviceActivity before it ended.
func (w *world) sweepOnce(ctx context.Context, devs []*device) error {
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.id)
	}
	w.gate.Lock()
	defer w.gate.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	db := w.up.store.DB()
	start := time.Now()
	moved, err := movedAt(ctx, db)
	if err != nil {
		return err
	}
	n, err := w.up.store.Sweep(ctx, w.lim, sweepMax)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	end := time.Now()
	hz, err := horizon(ctx, db)
	if err != nil {
		return err
	}
	// What this sweep purged, as the trigger recordDeletes installs logged
	// it in the sweep's own transaction. (Comparing the tombstones read
	// before the sweep with the rows left after it missed some: devices
	// push during a sweep, and with no device active the horizon passes
	// the latest version, so a tombstone pushed between that read and the
	// sweep was purged unrecorded, and the row looked lost at the end.)
	deleted, err := takeDeletes(ctx, db)
	if err != nil {
		return err
	}
	cut := end.Add(-w.lim.DeviceActivity)
	for _, id := range ids {
		if _, ok := moved[id]; !ok {
			moved[id] = time.Time{}
		}
	}
	for id, at := range moved {
		if at.Before(cut) {
			w.hist.justify(id, start, end)
		}
	}
	// The devices counted active whose stored cursor the horizon passed:
	// the server recorded them further than they stored (the answer to
	// their last pull page was lost, or is on its way to them).
	for _, d := range devs {
		if at, ok := moved[d.id]; !ok || at.Before(cut) || !d.syncMu.TryRLock() {
			continue // inactive, or away: its database may be reopening
		}
		cur, err := d.db.Syncer().Cursor(ctx)
		d.syncMu.RUnlock()
		if err != nil {
			continue // closed at the end
		}
		if c, err := server.ParseCursor(cur); err == nil && c.Version < hz {
			w.hist.passed(d.id, start, end)
		}
	}
	h := w.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range deleted {
		if !r.tombstone || r.version >= hz {
			// Only purges delete rows on the server: of tombstones, before
			// the horizon.
			h.errs = append(h.errs, fmt.Sprintf("G1: server accounts %s (version %d, deleted %v) was deleted from the server by a sweep whose horizon is %d",
				r.id, r.version, r.tombstone, hz))
			continue
		}
		h.purgedAccounts[r.id] = true
	}
	h.sweeps++
	if n > 0 { // the other retentions are left at their defaults (days): n counts tombstones
		h.purges++
		h.purged += n
	}
	h.horizon = hz
	return nil
}

// recordDeletes installs, in the server's database, a trigger that logs
// every row of the tenant's accounts deleted, in the transaction that
// deletes it, for takeDeletes: the oracle learns exactly what was purged.
func recordDeletes(ctx context.Context, db *sql.DB) error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS sim_deleted (id TEXT NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL)`,
		`CREATE TRIGGER IF NOT EXISTS sim_deleted_accounts AFTER DELETE ON accounts WHEN OLD._tenant = 'sim'
		BEGIN INSERT INTO sim_deleted (id, version, deleted) VALUES (OLD.id, OLD._version, OLD._deleted); END`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("record deletes: %w", err)
		}
	}
	return nil
}

// deletedRow is a row of accounts deleted on the server.
type deletedRow struct {
	id        string
	version   int64
	tombstone bool
}

// takeDeletes returns, and forgets, the rows of accounts deleted on the
// server since it last ran.
func takeDeletes(ctx context.Context, db *sql.DB) ([]deletedRow, error) {
	rows, err := db.QueryContext(ctx, `DELETE FROM sim_deleted RETURNING id, version, deleted`)
	if err != nil {
		return nil, fmt.Errorf("deleted accounts: %w", err)
	}
	defer rows.Close()
	var out []deletedRow
	for rows.Next() {
		var r deletedRow
		if err := rows.Scan(&r.id, &r.version, &r.tombstone); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// movedAt returns when the pull position of each device of the tenant last
// moved, which decides whether the server counts it active (the zero
// time for a device that never pulled).
func movedAt(ctx context.Context, db *sql.DB) (map[string]time.Time, error) {
	rows, err := db.QueryContext(ctx, `SELECT device, coalesce(moved_at, '') FROM _tether_devices WHERE tenant = 'sim'`)
	if err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var id, at string
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		if at == "" {
			out[id] = time.Time{}
			continue
		}
		t, err := entity.ParseTime(at)
		if err != nil {
			return nil, fmt.Errorf("device %s moved at %q: %w", id, at, err)
		}
		out[id] = t
	}
	return out, rows.Err()
}

// horizon returns the tenant's purge horizon: deletions before that
// version may be gone.
func horizon(ctx context.Context, db *sql.DB) (int64, error) {
	var v int64
	err := db.QueryRowContext(ctx, `SELECT version FROM _tether_horizons WHERE tenant = 'sim'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("horizon: %w", err)
	}
	return v, nil
}

// expectRebuild records that device d must be rebuilt when its cursor is
// before the purge horizon: its next pull would miss deletions. No sync of
// d may be under way. It reports whether it must.
func (w *world) expectRebuild(ctx context.Context, d *device, why string) (bool, error) {
	cur, err := d.db.Syncer().Cursor(ctx)
	if err != nil {
		return false, err
	}
	c, err := server.ParseCursor(cur)
	if err != nil {
		return false, err
	}
	w.mu.Lock()
	hz, err := horizon(ctx, w.up.store.DB())
	w.mu.Unlock()
	if err != nil || c.Version >= hz {
		return false, err
	}
	h := w.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	h.must[d.id] = fmt.Sprintf("%s with its cursor at version %d, before the purge horizon %d", why, c.Version, hz)
	h.pastHorizon++
	return true, nil
}

// An event in a device's schedule.
type event struct {
	kind int
	dur  time.Duration
	ops  int
}

const (
	evLong    = iota + 1 // away longer than DeviceActivity
	evShort              // away for a quarter of it
	evBackup             // copy the database file aside
	evRestore            // put the copy back
)

// plan returns the events of device i's schedule, by op index: away-able
// devices go away for long and short times and are restored from backups.
func plan(seed uint64, i, perDevice int, activity time.Duration) map[int]event {
	r := rand.New(rand.NewPCG(seed+uint64(i), 1234))
	out := map[int]event{}
	place := func(lo, hi int, e event) {
		for range 20 {
			k := lo + r.IntN(max(1, hi-lo))
			if _, taken := out[k]; !taken {
				out[k] = e
				return
			}
		}
	}
	for range max(2, perDevice/1000) {
		dur := activity*5/2 + time.Duration(r.Int64N(int64(activity)))
		place(perDevice/20, perDevice, event{kind: evLong, dur: dur, ops: 10 + r.IntN(20)})
	}
	for range max(1, perDevice/1000) {
		place(perDevice/20, perDevice, event{kind: evShort, dur: activity / 4, ops: 3 + r.IntN(5)})
	}
	pairs := perDevice / 3000
	if i == 2 {
		pairs++
	}
	if pairs > 0 {
		seg := perDevice / pairs
		for p := range pairs {
			base := p * seg
			place(base+seg/10, base+seg*4/10, event{kind: evBackup})
			place(base+seg*6/10, base+seg*9/10, event{kind: evRestore})
		}
	}
	return out
}

// absent takes device d away: it stops syncing for dur while it goes on
// writing (ops operations, spread over the time), then comes back. It
// returns the number of operations done.
func (d *device) absent(ctx context.Context, w *world, e event, done *atomic.Int64) (int, error) {
	d.syncMu.Lock() // waits for a sync under way; the other goroutine's wait here
	end := time.Now().Add(e.dur)
	j0 := len(d.journal)
	for k := range e.ops {
		if err := d.op(ctx); err != nil {
			d.syncMu.Unlock()
			return k, err
		}
		done.Add(1)
		time.Sleep(e.dur / time.Duration(e.ops+1))
	}
	time.Sleep(time.Until(end))
	for _, id := range d.journal[j0:] {
		d.awayJournal[id] = true
	}
	w.hist.mu.Lock()
	if e.kind == evLong {
		w.hist.long++
	} else {
		w.hist.short++
	}
	w.hist.awayJournal += len(d.journal) - j0
	w.hist.mu.Unlock()
	return e.ops, d.comeBack(ctx, w, fmt.Sprintf("came back after %s away", e.dur.Round(time.Millisecond)))
}

// comeBack is called with d.syncMu held and releases it: the device syncs
// again, and once a sync of it succeeds, every account it had not pushed
// is on the server (live, or deleted since by another device) and it was
// rebuilt if its cursor was before the horizon (G13).
func (d *device) comeBack(ctx context.Context, w *world, why string) error {
	w.gate.RLock()
	defer w.gate.RUnlock()
	_, err := w.expectRebuild(ctx, d, why)
	var unpushed []string
	if err == nil {
		unpushed, err = strings0(ctx, d.db.SQL(), `SELECT id FROM accounts WHERE _dirty != 0 AND _deleted = 0 ORDER BY id`)
	}
	d.syncMu.Unlock()
	if err != nil {
		return err
	}
	for range 5 {
		if _, err = d.sync(ctx); err == nil {
			break
		}
	}
	h := w.hist
	if err != nil {
		h.mu.Lock()
		h.uncheckedReturns++
		h.mu.Unlock()
		return nil
	}
	h.mu.Lock()
	why, still := h.must[d.id]
	h.checkedReturns++
	h.unpushedAccounts += len(unpushed)
	h.mu.Unlock()
	if still {
		h.errorf("G13: %s %s, and a sync of it succeeded without a rebuild", d.name, why)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range unpushed {
		var n int
		if err := w.up.store.DB().QueryRowContext(ctx, `SELECT count(*) FROM accounts WHERE _tenant = 'sim' AND id = ?`, id).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			h.errorf("G13: account %s, not yet pushed when %s %s, is not on the server after a sync of it succeeded", id, d.name, why)
		}
	}
	return nil
}

func strings0(ctx context.Context, db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// dbFiles are the files of a SQLite database.
func dbFiles(path string) []string { return []string{path, path + "-wal", path + "-shm"} }

// copyDB copies the database at from (closed) to to, -wal and -shm
// included; the files to has and from lacks are removed.
func copyDB(from, to string) error {
	fs0, fs1 := dbFiles(from), dbFiles(to)
	for i := range fs0 {
		if err := copyFile(fs0[i], fs1[i]); errors.Is(err, fs.ErrNotExist) {
			if err := os.Remove(fs1[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// reopen closes d, runs fn on its closed files, and opens it again. No sync
// is under way: d.syncMu is held.
func (d *device) reopen(fn func() error) error {
	d.close()
	if err := fn(); err != nil {
		return err
	}
	return d.open()
}

// backup copies d's database file aside, closed, and remembers its journal
// rows.
func (d *device) backup(ctx context.Context, w *world) error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	if err := d.reopen(func() error { return copyDB(d.path, d.path+".backup") }); err != nil {
		return fmt.Errorf("backup %s: %w", d.name, err)
	}
	ids, err := strings0(ctx, d.db.SQL(), `SELECT id FROM journal`)
	if err != nil {
		return err
	}
	d.backupJournal = map[string]bool{}
	for _, id := range ids {
		d.backupJournal[id] = true
	}
	w.hist.mu.Lock()
	w.hist.backups++
	w.hist.mu.Unlock()
	return nil
}

// restore replaces d's database file with its backup, as a user restoring
// last week's copy would. The journal rows written since and never pushed
// are gone with it; every other one must reach the server.
func (d *device) restore(ctx context.Context, w *world) error {
	if d.backupJournal == nil {
		return nil
	}
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	pushed, err := strings0(ctx, d.db.SQL(), `SELECT id FROM journal WHERE _dirty = 0`)
	if err != nil {
		return err
	}
	keep := maps.Clone(d.backupJournal)
	for _, id := range pushed {
		keep[id] = true
	}
	if err := d.reopen(func() error { return copyDB(d.path+".backup", d.path) }); err != nil {
		return fmt.Errorf("restore %s: %w", d.name, err)
	}
	now := time.Now()
	w.hist.justify(d.id, now, now)
	lost := 0
	j := d.journal[:0]
	for _, id := range d.journal {
		if keep[id] {
			j = append(j, id)
		} else {
			lost++
			delete(d.awayJournal, id)
		}
	}
	d.journal = j
	// The entries dirty in the copy go up again: any column may differ
	// from the server's (G7 for merge-columns).
	dirty, err := strings0(ctx, d.db.SQL(), `SELECT id FROM entries WHERE _dirty != 0`)
	if err != nil {
		return err
	}
	d.colsMu.Lock()
	for _, id := range dirty {
		d.changed[id] = map[string]bool{"account_id": true, "amount": true, "note": true}
	}
	d.colsMu.Unlock()
	w.hist.mu.Lock()
	w.hist.restores++
	w.hist.lostToRestore += lost
	w.hist.mu.Unlock()
	_, err = w.expectRebuild(ctx, d, "was restored from a backup")
	return err
}

// summary returns the counts of the history for the log.
func (h *history) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.rebuilds))
	total := 0
	for n, c := range h.rebuilds {
		names = append(names, fmt.Sprintf("%s:%d", n, c))
		total += c
	}
	sort.Strings(names)
	return fmt.Sprintf("rebuilds of active devices after a lost pull answer %d, other rebuilds that look needless %d (-sim.strict-rebuilds fails on both); absences %d long + %d short (%d returns checked on the server, %d after failed syncs), returns and restores past the purge horizon %d, backups %d, restores %d (journal rows never pushed and dropped by them %d), journal rows written while away %d, accounts unpushed at a return %d; sweeps %d, purges %d, tombstones purged %d, horizon at version %d; rebuilds %d %v",
		h.lostPullRebuilds, h.needless, h.long, h.short, h.checkedReturns, h.uncheckedReturns, h.pastHorizon, h.backups, h.restores, h.lostToRestore, h.awayJournal, h.unpushedAccounts,
		h.sweeps, h.purges, h.purged, h.horizon, total, names)
}
