package coordinator

import (
	"context"
	"sync"
	"time"
)

// Report describes one SyncNow.
type Report struct {
	Pushed        map[string]int // rows pushed per table
	Pulled        map[string]int // rows received per table (a device's own pushes come back only where the server changed them)
	Applied       int            // pulled rows written locally
	Conflicts     int            // conflicts of pushed rows, and those pulls told of (see Options.OnConflict)
	BytesSent     int64
	BytesReceived int64
	Attempts      int
	Duration      time.Duration
	// Rebuilt reports that the device was away longer than the server
	// keeps deletions, and rebuilt its rows from the server's snapshot
	// (keeping the ones edited here, which it pushes).
	Rebuilt bool
	// Evicted counts the rows removed from this device because its user
	// may no longer see them (the server's scopes: a membership revoked, a
	// row moved out of the user's reach). They are removed physically:
	// nothing is pushed for them, and nothing is logged but an edit made
	// here that was not pushed yet (a conflict of strategy forbidden).
	Evicted int
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
		rep, err := c.sync(ctx, r)
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
