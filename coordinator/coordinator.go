// Package coordinator runs tether's sync cycle: a connectivity check, a
// push of local changes, then a pull of everyone else's, retrying
// transient failures with exponential backoff and jitter.
//
// [Coordinator.SyncNow] is for a "Sync now" button: it returns [ErrOffline]
// at once when the server is unreachable, and concurrent calls share one
// run. [Coordinator.Run] syncs periodically until its context ends.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/sync/singleflight"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/pull"
	"github.com/tethersync/tether/push"
	"github.com/tethersync/tether/wire"
)

// Sentinel errors.
var (
	// ErrOffline is returned by SyncNow when the server cannot be reached.
	ErrOffline = errors.New("coordinator: server unreachable")
	// ErrClosed is returned by SyncNow after Close.
	ErrClosed = errors.New("coordinator: closed")
)

// Phases of a sync, reported in Progress.
const (
	PhaseConnect = "connect"
	PhasePush    = "push"
	PhasePull    = "pull"
	PhaseDone    = "done"
)

// Progress is a progress report for a progress bar.
type Progress struct {
	Phase string
	Table string
	// Done counts the rows of the phase handled so far.
	Done int
	// Total is the number of rows to push (known when the push starts);
	// 0 when unknown, as for a pull.
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
	Pulled        map[string]int // rows received per table, own echoes included
	Applied       int            // pulled rows written locally
	Conflicts     int
	BytesSent     int64
	BytesReceived int64
	Attempts      int
	Duration      time.Duration
}

// Options configures a Coordinator. The zero value works.
type Options struct {
	// PushBatchSize is the number of rows per push batch. Default 1,000,
	// at most 10,000.
	PushBatchSize int
	// PullBatchSize is the number of rows per pull page. Default 1,000,
	// at most 10,000.
	PullBatchSize int
	// HealthTimeout bounds the connectivity check. Default 3s.
	HealthTimeout time.Duration
	// InitialBackoff is the first wait before a retry. Default 500ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between retries. Default 30s.
	MaxBackoff time.Duration
	// MaxElapsed bounds the time spent retrying one SyncNow. Default 2m.
	MaxElapsed time.Duration
	// OnProgress, if set, receives progress reports. It must not block.
	OnProgress func(Progress)
	// OnConflict, if set, is called for each conflict the server resolved.
	OnConflict func(Conflict)
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

	group  singleflight.Group
	ctx    context.Context // owner context of shared runs
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	progress Progress // of the run under way
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
	c.push = push.New(db, api, push.Options{BatchSize: opts.PushBatchSize, OnBatch: c.onBatch})
	c.pull = pull.New(db, api, pull.Options{PageSize: opts.PullBatchSize, OnPage: c.onPage})
	return c
}

// Close stops a sync under way and waits for it to end.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// SyncNow checks connectivity, pushes local changes and pulls remote ones.
// It returns an error wrapping ErrOffline at once when the server does not
// answer the health check, and retries transient failures with backoff
// until Options.MaxElapsed. Calls made while a sync runs share its result.
// When ctx ends first, SyncNow returns ctx.Err() and the shared run goes
// on until it ends or Close is called.
func (c *Coordinator) SyncNow(ctx context.Context) (Report, error) {
	ch := c.group.DoChan("sync", func() (any, error) {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return Report{}, ErrClosed
		}
		c.wg.Add(1)
		c.mu.Unlock()
		defer c.wg.Done()
		return c.run(c.ctx)
	})
	select {
	case res := <-ch:
		rep, _ := res.Val.(Report)
		return rep, res.Err
	case <-ctx.Done():
		return Report{}, ctx.Err()
	}
}

// run is one shared SyncNow.
func (c *Coordinator) run(ctx context.Context) (rep Report, err error) {
	start := time.Now()
	rep = Report{Pushed: map[string]int{}, Pulled: map[string]int{}}
	sent0, recv0 := c.api.Bytes()
	defer func() {
		sent, recv := c.api.Bytes()
		rep.BytesSent, rep.BytesReceived = sent-sent0, recv-recv0
		rep.Duration = time.Since(start)
	}()
	c.report(Progress{Phase: PhaseConnect})
	hctx, cancel := context.WithTimeout(ctx, c.opts.HealthTimeout)
	err = c.api.Health(hctx)
	cancel()
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrOffline, err)
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = c.opts.InitialBackoff
	b.MaxInterval = c.opts.MaxBackoff
	b.MaxElapsedTime = c.opts.MaxElapsed
	b.Reset()
	registered := false
	for {
		rep.Attempts++
		var err error
		if !registered {
			err = c.register(ctx)
			registered = err == nil
		}
		if err == nil {
			err = c.cycle(ctx, &rep)
		}
		if err == nil {
			c.report(Progress{Phase: PhaseDone})
			return rep, nil
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

// register registers the device, and binds the database to the tenant.
func (c *Coordinator) register(ctx context.Context) error {
	tenant, err := c.db.Tenant(ctx)
	if err != nil {
		return err
	}
	schema := c.db.Registry().Schema()
	dev, err := c.api.RegisterDevice(ctx, c.db.DeviceID(), tenant, &schema)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	// Before any data moves, the database must belong to this tenant.
	if err := c.db.BindTenant(ctx, dev.Tenant); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// cycle pushes then pulls once.
func (c *Coordinator) cycle(ctx context.Context, rep *Report) error {
	total, err := c.db.Pending(ctx)
	if err != nil {
		return err
	}
	c.report(Progress{Phase: PhasePush, Total: total})
	pres, err := c.push.Push(ctx)
	for t, n := range pres.Rows {
		rep.Pushed[t] += n
	}
	c.conflicts(pres.Conflicts, rep)
	if err != nil {
		return err
	}
	c.report(Progress{Phase: PhasePull})
	lres, err := c.pull.Pull(ctx)
	for t, n := range lres.Rows {
		rep.Pulled[t] += n
	}
	rep.Applied += lres.Applied
	return err
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

func (c *Coordinator) onBatch(table string, n int) {
	c.mu.Lock()
	p := c.progress
	p.Table, p.Done = table, p.Done+n
	c.mu.Unlock()
	c.report(p)
}

func (c *Coordinator) onPage(rows map[string]int) {
	for table, n := range rows {
		c.mu.Lock()
		p := c.progress
		p.Table, p.Done = table, p.Done+n
		c.mu.Unlock()
		c.report(p)
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
	DeviceRows int // rows on the device, deleted and unpushed ones included
	ServerRows int // rows of the tenant on the server, deleted ones included
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
		local, pending, err := c.db.Digest(ctx, e.Table.Name)
		if err != nil {
			return VerifyReport{}, fmt.Errorf("verify: %w", err)
		}
		remote, ok := byName[e.Table.Name]
		rep.Tables = append(rep.Tables, TableCheck{Table: e.Table.Name, DeviceRows: local.Rows, ServerRows: remote.Rows,
			Pending: pending, Match: ok && remote.SHA256 == local.SHA256})
	}
	return rep, nil
}
