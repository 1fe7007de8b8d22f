package coordinator

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/pull"
	"github.com/tethersync/tether/push"
)

// Sentinel errors.
var (
	// ErrOffline is returned by SyncNow when the server cannot be reached
	// (it wraps client.ErrUnreachable).
	ErrOffline = errors.New("coordinator: server unreachable")
	// ErrClosed is returned by SyncNow after Close.
	ErrClosed = errors.New("coordinator: closed")
)

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
	// to draw them), and a report of PhaseRetry before each retry, with
	// the attempt, the wait and the error. It is called from the sync's
	// goroutine, one report at a time, and must not block.
	OnProgress func(Progress)
	// OnConflict, if set, is called for each conflict the server resolved
	// for a pushed row, and for each conflict a pull told the device of (a
	// delete of its undone, or a row of its deleted, to keep references
	// whole; an edit made here to a row removed because its user may no
	// longer see it), once each. Report.Conflicts counts them all.
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
	db    *localdb.DB
	store *localdb.Syncer // db's engine view, shared by push, pull and the rebuild
	api   *client.Client
	opts  Options

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

	markOnce sync.Once // computes mark, the registration mark (see registrationMark)
	mark     string
	markErr  error
}

// New returns a coordinator for db and the server api talks to. It gives
// api the key of db's device (client.Client.SetDeviceKey), so that every
// request naming the device proves it comes from it.
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
	c := &Coordinator{db: db, store: db.Syncer(), api: api, opts: opts}
	api.SetDeviceKey(db.DeviceID(), c.store.DeviceKey())
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.push = push.New(c.store, api, push.Options{BatchSize: opts.PushBatchSize, OnBatch: c.onBatch})
	c.pull = pull.New(c.store, api, pull.Options{PageSize: opts.PullBatchSize, OnPage: c.onPage})
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
