package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/pull"
	"github.com/tethersync/tether/push"
	"github.com/tethersync/tether/wire"
)

// Sentinel errors.
var (
	// ErrOffline is returned by SyncNow when the server cannot be reached
	// (it wraps client.ErrUnreachable).
	ErrOffline = errors.New("coordinator: server unreachable")
	// ErrClosed is returned by SyncNow after Close.
	ErrClosed = errors.New("coordinator: closed")
)

// Phases of a sync, reported in Progress.
const (
	PhaseConnect = "connect"
	PhasePush    = "push"
	PhasePull    = "pull"
	// PhaseRebuild is a rebuild from the server's snapshot, for a device
	// that was away longer than the server keeps deletions: Done counts
	// the rows received, Total is the tenant's rows.
	PhaseRebuild = "rebuild"
	PhaseDone    = "done"
)

// Progress is a progress report for a progress bar.
//
// Done and Total count the rows of the current phase: they start again at
// 0 when the pull begins, and when a failed attempt is retried. Total is
// never below Done. For the push, Total is the number of dirty rows when
// the push starts; rows saved during the push that go up in the same run
// raise it (to Done), so it can grow but Done/Total never exceeds 1. For
// the pull Total is 0: the number of rows to come is not known.
//
// A UI draws it so: during PhaseConnect an indeterminate bar (or empty);
// during PhasePush with Total > 0 a bar filled to Done/Total, which may move
// back a little when Total grows; during PhasePull an indeterminate bar
// with the count Done beside it; at PhaseDone a full bar. Only PhaseDone
// (or the return of SyncNow) says that a sync finished.
type Progress struct {
	Phase string
	Table string
	// Done counts the rows of the phase handled so far.
	Done int
	// Total is the number of rows of the phase, at least Done; 0 when
	// unknown, as for a pull.
	Total int
}

// Conflict is a conflict the server resolved for one of this device's rows.
type Conflict struct {
	Table    string
	ID       string
	Strategy string
	// LocalWon reports that the device's version was kept.
	LocalWon bool
	// Outcome is wire.WinnerClient, WinnerServer or WinnerMerged.
	Outcome string
	// Winner is the winning row as the server holds it.
	Winner wire.Row
}

// Report describes one SyncNow.
type Report struct {
	Pushed        map[string]int // rows pushed per table
	Pulled        map[string]int // rows received per table (a device's own pushes come back only where the server changed them)
	Applied       int            // pulled rows written locally
	Conflicts     int
	BytesSent     int64
	BytesReceived int64
	Attempts      int
	Duration      time.Duration
	// Rebuilt reports that the device was away longer than the server
	// keeps deletions, and rebuilt its rows from the server's snapshot
	// (keeping the ones edited here, which it pushes).
	Rebuilt bool
}

// Options configures a Coordinator. The zero value works.
type Options struct {
	// PushBatchSize is the number of rows per push batch. Default 1,000,
	// at most 10,000.
	PushBatchSize int
	// PullBatchSize is the number of rows per pull page. Default 1,000,
	// at most 10,000.
	PullBatchSize int
	// HealthTimeout bounds how long each request of a sync may take to get
	// a connection to the server (dial and TLS handshake, or an idle one):
	// past it the sync ends with ErrOffline. There is no request of its own
	// to check connectivity. Default 3s.
	HealthTimeout time.Duration
	// InitialBackoff is the first wait before a retry. Default 500ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between retries. Default 30s.
	MaxBackoff time.Duration
	// MaxElapsed bounds the time spent retrying one SyncNow. Default 2m.
	MaxElapsed time.Duration
	// OnProgress, if set, receives progress reports (see Progress for how
	// to draw them). It is called from the sync's goroutine, one report at
	// a time, and must not block.
	OnProgress func(Progress)
	// OnConflict, if set, is called for each conflict the server resolved.
	OnConflict func(Conflict)
	// OnSync, if set, is called after each sync ends, whoever started it
	// (SyncNow, Run, Live), with its report and error: what a status page
	// shows as the last success and the last error. It must not block.
	OnSync func(Report, error)
	// Logger receives state changes of Run and Live. Default slog.Default().
	Logger *slog.Logger
	// LiveDebounce is how long Live waits after a change event before it
	// syncs, so that a burst of commits costs one sync. Default 250ms.
	LiveDebounce time.Duration
}

// Coordinator syncs one local database with one server. It is safe for
// concurrent use.
type Coordinator struct {
	db   *localdb.DB
	api  *client.Client
	opts Options

	push *push.Engine
	pull *pull.Engine

	ctx    context.Context // owner context of runs; Close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	cur      *run     // the run under way, if any
	next     *run     // the follow-up run, queued while cur runs
	progress Progress // of the run under way
}

// run is one sync run and the SyncNow calls waiting for it.
type run struct {
	done chan struct{} // closed when rep and err are set
	rep  Report
	err  error

	waiters int // SyncNow calls waiting; guarded by Coordinator.mu

	// cancel ends the run's context. When the last waiter leaves, the run
	// stops: at once when it is between network exchanges (connecting,
	// waiting to retry), else at the next safe point, after the batch or
	// page on the wire is acknowledged and recorded.
	cancel   context.CancelFunc
	stopMu   sync.Mutex
	stopping bool
	busy     bool // inside the push or pull engine
}

// stop asks the run to stop at the next safe point.
func (r *run) stop() {
	r.stopMu.Lock()
	defer r.stopMu.Unlock()
	r.stopping = true
	if !r.busy {
		r.cancel()
	}
}

// enter marks the run as inside an engine; it reports false, and ends the
// run's context, when the run is stopping.
func (r *run) enter() bool {
	r.stopMu.Lock()
	defer r.stopMu.Unlock()
	if r.stopping {
		r.cancel()
		return false
	}
	r.busy = true
	return true
}

// leave marks the run as outside the engines.
func (r *run) leave() {
	r.stopMu.Lock()
	defer r.stopMu.Unlock()
	r.busy = false
	if r.stopping {
		r.cancel()
	}
}

// safePoint is called after each acknowledged batch or applied page: a
// stopping run ends its context there.
func (r *run) safePoint() {
	r.stopMu.Lock()
	defer r.stopMu.Unlock()
	if r.stopping {
		r.cancel()
	}
}

// New returns a coordinator for db and the server api talks to.
func New(db *localdb.DB, api *client.Client, opts Options) *Coordinator {
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = 3 * time.Second
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = 500 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.MaxElapsed <= 0 {
		opts.MaxElapsed = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LiveDebounce <= 0 {
		opts.LiveDebounce = 250 * time.Millisecond
	}
	c := &Coordinator{db: db, api: api, opts: opts}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.push = push.New(db.Syncer(), api, push.Options{BatchSize: opts.PushBatchSize, OnBatch: c.onBatch})
	c.pull = pull.New(db.Syncer(), api, pull.Options{PageSize: opts.PullBatchSize, OnPage: c.onPage})
	return c
}

// Close stops a sync under way (at once, not at a safe point; what was
// acknowledged stays recorded and the next sync resumes from there), fails
// a queued one with ErrClosed, and waits for the sync to end.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	c.closed = true
	queued := c.next
	c.next = nil
	c.mu.Unlock()
	if queued != nil {
		queued.err = ErrClosed
		close(queued.done)
	}
	c.cancel()
	c.wg.Wait()
	return nil
}

// Shutdown stops the sync under way at the next safe point, as if every
// caller had left (see SyncNow), fails a queued one with ErrClosed, and
// waits for the sync to end. When ctx ends first, it stops the sync at once,
// as Close does, waits for it, and returns ctx.Err(). Either way the next
// sync, by this process or after a restart, resumes from the last
// acknowledged batch. Later calls of SyncNow return ErrClosed. Use it on
// SIGTERM.
func (c *Coordinator) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	queued, cur := c.next, c.cur
	c.next = nil
	c.mu.Unlock()
	if queued != nil {
		queued.err = ErrClosed
		close(queued.done)
	}
	if cur != nil {
		cur.stop()
	}
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		c.cancel()
		<-done
		return ctx.Err()
	}
}

// SyncNow pushes local changes and pulls remote ones. It returns an error
// wrapping ErrOffline at once when a request cannot reach the server (no
// connection within Options.HealthTimeout, or a gateway's 502), and
// retries other transient failures with backoff until Options.MaxElapsed.
// A sync with nothing to do is one request, and one whose push fits in one
// batch two: the device registers only when it must.
//
// SyncNow returns only after a sync that started after the call has
// finished, so every edit saved before the call went up (or SyncNow
// failed). A call made while a sync runs waits for that sync to end and
// then for a follow-up sync; all calls made during one sync share the same
// follow-up, so a burst of clicks costs at most two syncs. Each call
// returns the Report of the sync it waited for.
//
// When ctx ends first, SyncNow returns ctx.Err(). If no other call waits
// for its sync, that sync stops at the next safe point: at once while it
// connects or waits to retry, else as soon as the batch or page on the wire
// has been acknowledged and recorded. Nothing is lost and the next sync
// resumes from the last acknowledged batch (a queued follow-up that nobody
// waits for any more is dropped). Run and Live stop their sync the same way
// when their context ends.
func (c *Coordinator) SyncNow(ctx context.Context) (Report, error) {
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Report{}, ErrClosed
	}
	var r *run
	switch {
	case c.cur == nil:
		r = c.startLocked()
	case c.next == nil:
		r = &run{done: make(chan struct{})}
		c.next = r
	default:
		r = c.next
	}
	r.waiters++
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.rep, r.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	r.waiters--
	if r.waiters == 0 {
		switch r {
		case c.next:
			c.next = nil // nobody wants it any more
		case c.cur:
			r.stop()
		}
	}
	c.mu.Unlock()
	select {
	case <-r.done: // it ended meanwhile: its result is the better answer
		return r.rep, r.err
	default:
		return Report{}, ctx.Err()
	}
}

// Syncing reports whether a sync is under way.
func (c *Coordinator) Syncing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// startLocked starts a run, or the queued one, as the current run. c.mu is
// held.
func (c *Coordinator) startLocked() *run {
	r := c.next
	c.next = nil
	if r == nil {
		r = &run{done: make(chan struct{})}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	r.cancel = cancel
	c.cur = r
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		rep, err := c.run(ctx, r)
		cancel()
		if c.opts.OnSync != nil {
			c.opts.OnSync(rep, err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		r.rep, r.err = rep, err
		close(r.done)
		c.cur = nil
		if c.next != nil && !c.closed {
			c.startLocked()
		}
	}()
	return r
}

// run is one sync.
func (c *Coordinator) run(ctx context.Context, r *run) (rep Report, err error) {
	start := time.Now()
	rep = Report{Pushed: map[string]int{}, Pulled: map[string]int{}}
	sent0, recv0 := c.api.Bytes()
	defer func() {
		sent, recv := c.api.Bytes()
		rep.BytesSent, rep.BytesReceived = sent-sent0, recv-recv0
		rep.Duration = time.Since(start)
	}()
	c.report(Progress{Phase: PhaseConnect})
	// No request of its own checks the connection: each request of the
	// sync must connect within HealthTimeout, and one that cannot reach
	// the server ends the sync as offline, without retries (what was
	// acknowledged stays, and the next sync goes on from there).
	ctx = client.WithConnectTimeout(ctx, c.opts.HealthTimeout)
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = c.opts.InitialBackoff
	b.MaxInterval = c.opts.MaxBackoff
	b.MaxElapsedTime = c.opts.MaxElapsed
	b.Reset()
	reregistered := false
	for {
		rep.Attempts++
		err := c.register(ctx, false)
		if err == nil {
			err = c.cycle(ctx, r, &rep)
		}
		if errors.Is(err, wire.ErrDeviceUnknown) && !reregistered {
			// The server lost the device's registration (a database
			// restored or replaced): register again, once, and go on.
			reregistered = true
			if err = c.register(ctx, true); err == nil {
				err = c.cycle(ctx, r, &rep)
			}
		}
		if err == nil {
			c.report(Progress{Phase: PhaseDone})
			return rep, nil
		}
		if errors.Is(err, client.ErrUnreachable) { // retrying would not help soon
			if ctx.Err() != nil { // stopped while connecting: not a verdict on the server
				return rep, fmt.Errorf("sync: stopped while connecting: %w", ctx.Err())
			}
			return rep, fmt.Errorf("%w: %w", ErrOffline, err)
		}
		if ctx.Err() != nil || !client.Transient(err) {
			return rep, err
		}
		wait := b.NextBackOff()
		if wait == backoff.Stop {
			return rep, fmt.Errorf("sync: gave up after %d attempts: %w", rep.Attempts, err)
		}
		wait = max(wait, client.RetryAfter(err))
		if err := sleep(ctx, wait); err != nil {
			return rep, err
		}
	}
}

// register registers the device, and binds the database to the tenant,
// unless it did with the same schema before (or again, with force, after
// the server said it does not know the device). The client names the
// database's tenant in every request, so that the server refuses
// credentials of another tenant without a registration first.
func (c *Coordinator) register(ctx context.Context, force bool) error {
	tenant, err := c.db.Syncer().Tenant(ctx)
	if err != nil {
		return err
	}
	c.api.SetTenant(tenant)
	schema := c.db.Registry().Schema()
	js, err := json.Marshal(schema)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	sum := sha256.Sum256(js)
	mark := hex.EncodeToString(sum[:])
	if !force && tenant != "" {
		if done, err := c.db.Syncer().Registration(ctx); err != nil || done == mark {
			return err
		}
	}
	dev, err := c.api.RegisterDevice(ctx, c.db.DeviceID(), tenant, &schema)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	// Before any data moves, the database must belong to this tenant.
	if err := c.db.Syncer().BindTenant(ctx, dev.Tenant); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	c.api.SetTenant(dev.Tenant)
	return c.db.Syncer().SetRegistration(ctx, mark)
}

// cycle pushes then pulls once. Each engine call is a stretch the run's
// stop waits out until the next safe point (see run.safePoint).
func (c *Coordinator) cycle(ctx context.Context, r *run, rep *Report) error {
	total, err := c.db.Pending(ctx)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	c.report(Progress{Phase: PhasePush, Total: total})
	if !r.enter() {
		return fmt.Errorf("sync: stopped before the push: %w", context.Canceled)
	}
	pres, err := c.push.Push(ctx)
	r.leave()
	for t, n := range pres.Rows {
		rep.Pushed[t] += n
	}
	c.conflicts(pres.Conflicts, rep)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		// A rebuild cut short goes on first; then the pull.
		if _, under, err := c.db.Syncer().RebuildCursor(ctx); err != nil {
			return fmt.Errorf("sync: %w", err)
		} else if under {
			if err := c.rebuild(ctx, r, rep); err != nil {
				return err
			}
		}
		c.report(Progress{Phase: PhasePull})
		if !r.enter() {
			return fmt.Errorf("sync: stopped before the pull: %w", context.Canceled)
		}
		lres, err := c.pull.Pull(ctx)
		r.leave()
		for t, n := range lres.Rows {
			rep.Pulled[t] += n
		}
		rep.Applied += lres.Applied
		if !errors.Is(err, wire.ErrHistoryPurged) || attempt > 0 {
			return err
		}
		// Away longer than the server keeps deletions: rebuild from its
		// snapshot, keeping what was edited here, then pull on.
		c.opts.Logger.Info("sync: the server's history no longer reaches this device's cursor: rebuilding from a snapshot")
		if err := c.db.Syncer().BeginRebuild(ctx); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
}

// rebuild reads the server's snapshot page by page into the database
// (resumable: each page is stored with its position), then ends the
// rebuild and leaves the pull to go on from where the snapshot started.
func (c *Coordinator) rebuild(ctx context.Context, r *run, rep *Report) error {
	cursor, _, err := c.db.Syncer().RebuildCursor(ctx)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	done, total := 0, 0
	c.report(Progress{Phase: PhaseRebuild})
	for range 1 << 30 { // ends with the snapshot's last page
		if !r.enter() {
			return fmt.Errorf("sync: stopped during the rebuild: %w", context.Canceled)
		}
		page, err := c.api.Snapshot(ctx, c.db.DeviceID(), cursor, wire.BatchSize(c.opts.PullBatchSize))
		if err == nil {
			_, err = c.db.Syncer().ApplySnapshot(ctx, page.Rows, page.Cursor)
		}
		r.leave()
		if err != nil {
			return fmt.Errorf("sync: rebuild: %w", err)
		}
		if page.Total > 0 {
			total = page.Total
		}
		done += len(page.Rows)
		for _, row := range page.Rows {
			rep.Pulled[row.Table]++
		}
		c.report(Progress{Phase: PhaseRebuild, Done: done, Total: max(total, done)})
		cursor = page.Cursor
		if !page.More {
			if _, err := c.db.Syncer().FinishRebuild(ctx, page.Resume); err != nil {
				return fmt.Errorf("sync: %w", err)
			}
			rep.Rebuilt = true
			return nil
		}
		c.safePoint()
	}
	return fmt.Errorf("sync: rebuild did not end")
}

func (c *Coordinator) conflicts(cs []wire.Conflict, rep *Report) {
	rep.Conflicts += len(cs)
	if c.opts.OnConflict == nil {
		return
	}
	for _, cf := range cs {
		c.opts.OnConflict(Conflict{Table: cf.Table, ID: cf.ID, Strategy: cf.Strategy, LocalWon: cf.Winner == wire.WinnerClient,
			Outcome: cf.Winner, Winner: cf.Row})
	}
}

func (c *Coordinator) report(p Progress) {
	c.mu.Lock()
	c.progress = p
	c.mu.Unlock()
	if c.opts.OnProgress != nil {
		c.opts.OnProgress(p)
	}
}

// onBatch is called by the push engine after each acknowledged batch: a
// safe point.
func (c *Coordinator) onBatch(table string, n int) {
	c.advance(table, n)
	c.safePoint()
}

// onPage is called by the pull engine after each applied page: a safe
// point.
func (c *Coordinator) onPage(rows map[string]int) {
	for table, n := range rows {
		c.advance(table, n)
	}
	c.safePoint()
}

// advance adds n handled rows of table to the progress, raising the total
// when rows saved during the phase made it too low.
func (c *Coordinator) advance(table string, n int) {
	c.mu.Lock()
	p := c.progress
	p.Table, p.Done = table, p.Done+n
	if p.Phase == PhasePush && p.Total < p.Done {
		p.Total = p.Done
	}
	c.mu.Unlock()
	c.report(p)
}

// safePoint stops the current run there if it is stopping.
func (c *Coordinator) safePoint() {
	c.mu.Lock()
	r := c.cur
	c.mu.Unlock()
	if r != nil {
		r.safePoint()
	}
}

// Run syncs every interval until ctx ends, and once at the start. Failed
// rounds are logged (on changes of state only) and retried next round. It
// returns ctx.Err().
func (c *Coordinator) Run(ctx context.Context, interval time.Duration) error {
	return c.loop(ctx, interval, nil)
}

// Live is Run in live mode: besides every interval, it syncs soon after the
// server announces that another device's changes committed (GET
// /v1/events), waiting Options.LiveDebounce so that a burst costs one sync,
// and once each time the stream opens. When the stream drops, it
// reconnects with exponential backoff (Options.InitialBackoff to
// MaxBackoff); in between, the interval keeps the device up to date. It
// returns ctx.Err().
func (c *Coordinator) Live(ctx context.Context, interval time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kick := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.follow(ctx, kick)
	}()
	err := c.loop(ctx, interval, kick)
	cancel()
	<-done
	return err
}

// loop syncs at once, then at each interval and, when kick is not nil, a
// debounce after each kick.
func (c *Coordinator) loop(ctx context.Context, interval time.Duration, kick <-chan struct{}) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failures := 0
	for {
		_, err := c.SyncNow(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			if failures == 0 {
				c.opts.Logger.Warn("tether sync failing", "err", err)
			}
			failures++
		case failures > 0:
			c.opts.Logger.Info("tether sync ok", "after_failures", failures)
			failures = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-kick:
			if err := sleep(ctx, c.opts.LiveDebounce); err != nil {
				return err
			}
			select { // events during the debounce are covered by this sync
			case <-kick:
			default:
			}
		}
	}
}

// follow reads the server's event stream until ctx ends, kicking the sync
// loop for each change another device committed, and each time the stream
// opens (changes committed before it opened were not announced).
func (c *Coordinator) follow(ctx context.Context, kick chan<- struct{}) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = c.opts.InitialBackoff
	b.MaxInterval = c.opts.MaxBackoff
	b.MaxElapsedTime = 0 // never give up
	b.Reset()
	signal := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		start := time.Now()
		err := c.api.Events(ctx, signal, func(ev wire.Event) {
			if ev.Device != c.db.DeviceID() { // not our own push
				signal()
			}
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			b.Reset() // the stream was up for a while: reconnect promptly
		}
		wait := b.NextBackOff()
		c.opts.Logger.Info("tether event stream dropped", "err", err, "retry_in", wait)
		if sleep(ctx, wait) != nil {
			return
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// TableCheck compares one table of the device with the server.
type TableCheck struct {
	Table      string
	DeviceRows int // live rows on the device, unpushed ones included
	ServerRows int // live rows of the tenant on the server
	Pending    int // device rows waiting to be pushed
	Match      bool
}

// VerifyReport is the answer of Verify.
type VerifyReport struct {
	Tables []TableCheck
}

// Differs returns the names of the tables whose contents differ.
func (r VerifyReport) Differs() []string {
	var out []string
	for _, t := range r.Tables {
		if !t.Match {
			out = append(out, t.Table)
		}
	}
	return out
}

// Verify compares a SHA-256 digest of every table's rows on the device with
// the server's, and reports which tables differ: a diagnostic a field
// technician can run. Sync first: rows not yet pushed (see Pending) or not
// yet pulled make a table differ. Verify moves no rows.
func (c *Coordinator) Verify(ctx context.Context) (VerifyReport, error) {
	// Compared: the columns this device has, which a server with a newer
	// schema has too.
	columns := map[string][]string{}
	for _, t := range c.db.Registry().Schema().Tables {
		for _, col := range t.Columns {
			columns[t.Name] = append(columns[t.Name], col.Name)
		}
	}
	srv, err := c.api.Digests(ctx, columns)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("verify: %w", err)
	}
	byName := map[string]wire.TableDigest{}
	for _, t := range srv.Tables {
		byName[t.Table] = t
	}
	var rep VerifyReport
	for _, e := range c.db.Registry().Entities() {
		local, pending, err := c.db.Syncer().Digest(ctx, e.Table.Name)
		if err != nil {
			return VerifyReport{}, fmt.Errorf("verify: %w", err)
		}
		remote, ok := byName[e.Table.Name]
		rep.Tables = append(rep.Tables, TableCheck{Table: e.Table.Name, DeviceRows: local.Rows, ServerRows: remote.Rows,
			Pending: pending, Match: ok && remote.SHA256 == local.SHA256})
	}
	return rep, nil
}
