package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/wire"
)

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
	// Reason says why, for a conflict the server settled to keep
	// references whole (Strategy wire.StrategyReference: a delete undone,
	// a row deleted with the one it referenced) and for a write refused or
	// a row removed because the device's user may not write or see it
	// (wire.StrategyForbidden). Conflicts learned through a pull have one.
	Reason string
}

// sync is one sync run: register when needed, push then pull, retried
// with backoff while the failures are transient.
func (c *Coordinator) sync(ctx context.Context, r *run) (rep Report, err error) {
	start := time.Now()
	rep = Report{Pushed: map[string]int{}, Pulled: map[string]int{}}
	sent0, recv0 := c.api.Bytes()
	defer func() {
		sent, recv := c.api.Bytes()
		rep.BytesSent, rep.BytesReceived = sent-sent0, recv-recv0
		rep.Duration = time.Since(start)
	}()
	// No request of its own checks the connection: each request of the
	// sync must connect within HealthTimeout, and one that cannot reach
	// the server ends the sync as offline, without retries (what was
	// acknowledged stays, and the next sync goes on from there).
	ctx = client.WithConnectTimeout(ctx, c.opts.HealthTimeout)
	b := c.backoff(c.opts.MaxElapsed)
	reregistered := false
	for {
		rep.Attempts++
		c.report(Progress{Phase: PhaseConnect}) // each attempt, after a PhaseRetry
		err := c.register(ctx, false)
		if err == nil {
			err = explainDevice(c.db.DeviceID(), c.cycle(ctx, r, &rep))
		}
		if errors.Is(err, wire.ErrDeviceUnknown) && !reregistered {
			// The server lost the device's registration (a database
			// restored or replaced): register again, once, and go on.
			reregistered = true
			if err = c.register(ctx, true); err == nil {
				err = explainDevice(c.db.DeviceID(), c.cycle(ctx, r, &rep))
			}
		}
		if err == nil {
			c.report(Progress{Phase: PhaseDone})
			return rep, nil
		}
		wait, rerr := retry(ctx, err, b, rep.Attempts)
		if rerr != nil {
			return rep, rerr
		}
		c.report(Progress{Phase: PhaseRetry, Attempt: rep.Attempts + 1, Wait: wait, Err: err})
		if err := sleep(ctx, wait); err != nil {
			return rep, err
		}
	}
}

// retry returns how long to wait before the next attempt of a sync whose
// attempt number attempts failed with err, or the error that ends the
// sync: ErrOffline when the server cannot be reached, err when it is not
// transient, or when the backoff b gives up, also when the server asks to
// wait (Retry-After) past what is left of b's MaxElapsedTime: a "Sync now"
// is not kept waiting an hour by a server under maintenance.
func retry(ctx context.Context, err error, b backoff.BackOff, attempts int) (time.Duration, error) {
	if errors.Is(err, client.ErrUnreachable) { // retrying would not help soon
		if ctx.Err() != nil { // stopped while connecting: not a verdict on the server
			return 0, fmt.Errorf("sync: stopped while connecting: %w", ctx.Err())
		}
		return 0, fmt.Errorf("%w: %w", ErrOffline, err)
	}
	if ctx.Err() != nil || !client.Transient(err) {
		return 0, err
	}
	wait := b.NextBackOff()
	if wait == backoff.Stop {
		return 0, fmt.Errorf("sync: gave up after %d attempts: %w", attempts, err)
	}
	after := client.RetryAfter(err)
	if eb, ok := b.(*backoff.ExponentialBackOff); ok && eb.MaxElapsedTime > 0 && after > wait && eb.GetElapsedTime()+after > eb.MaxElapsedTime {
		return 0, fmt.Errorf("sync: gave up after %d attempts: the server asks to retry in %v, past MaxElapsed (%v): %w",
			attempts, after.Round(time.Second), eb.MaxElapsedTime, err)
	}
	return max(wait, after), nil
}

// backoff returns the exponential backoff, with jitter, of the options,
// giving up after maxElapsed (never when 0).
func (c *Coordinator) backoff(maxElapsed time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = c.opts.InitialBackoff
	b.MaxInterval = c.opts.MaxBackoff
	b.MaxElapsedTime = maxElapsed
	b.Reset()
	return b
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
		if _, under, err := c.store.RebuildCursor(ctx); err != nil {
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
		rep.Evicted += lres.Evicted
		c.conflicts(lres.Conflicts, rep)
		if !errors.Is(err, wire.ErrHistoryPurged) || attempt > 0 {
			return err
		}
		// Away longer than the server keeps deletions: rebuild from its
		// snapshot, keeping what was edited here, then pull on.
		c.opts.Logger.Info("sync: the server's history no longer reaches this device's cursor: rebuilding from a snapshot")
		if err := c.store.BeginRebuild(ctx); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
}

// conflicts counts the conflicts of a push or a pull in rep, and reports
// each to Options.OnConflict.
func (c *Coordinator) conflicts(cs []wire.Conflict, rep *Report) {
	rep.Conflicts += len(cs)
	if c.opts.OnConflict == nil {
		return
	}
	for _, cf := range cs {
		c.opts.OnConflict(Conflict{Table: cf.Table, ID: cf.ID, Strategy: cf.Strategy, LocalWon: cf.Winner == wire.WinnerClient,
			Outcome: cf.Winner, Winner: cf.Row, Reason: cf.Reason})
	}
}
