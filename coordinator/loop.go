package coordinator

import (
	"context"
	"time"

	"github.com/tethersync/tether/wire"
)

// Run syncs every interval until ctx ends, and once at the start. Failed
// rounds are logged (on changes of state only) and retried next round. It
// returns ctx.Err(), or an error wrapping ErrRevoked as soon as a sync
// finds the device revoked: retrying would not help.
func (c *Coordinator) Run(ctx context.Context, interval time.Duration) error {
	return c.loop(ctx, interval, nil)
}

// Live is Run in live mode: besides every interval, it syncs soon after the
// server announces that another device's changes committed (GET
// /v1/events), waiting Options.LiveDebounce so that a burst costs one sync,
// and once each time the stream opens. When the stream drops, it
// reconnects with exponential backoff (Options.InitialBackoff to
// MaxBackoff); in between, the interval keeps the device up to date. The
// stream names the device: the server ends it when the device is revoked
// (at the next event or heartbeat), as it refuses the device's syncs. It
// returns ctx.Err(), or an error wrapping ErrRevoked as soon as the stream
// or a sync finds the device revoked.
func (c *Coordinator) Live(ctx context.Context, interval time.Duration) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	kick := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.follow(ctx, kick); err != nil {
			cancel(err) // revoked: the loop stops too
		}
	}()
	err := c.loop(ctx, interval, kick)
	cancel(nil)
	<-done
	if cause := context.Cause(ctx); revoked(cause) && !revoked(err) {
		c.opts.Logger.Error("tether device revoked: sync stopped", "err", cause)
		return cause
	}
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
		case revoked(err):
			c.opts.Logger.Error("tether device revoked: sync stopped", "err", err)
			return err
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
// opens (changes committed before it opened were not announced). It
// returns nil when ctx ends, and the error wrapping ErrRevoked when the
// server refuses the stream because the device is revoked.
func (c *Coordinator) follow(ctx context.Context, kick chan<- struct{}) error {
	b := c.backoff(0) // never gives up
	signal := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		start := time.Now()
		err := c.api.DeviceEvents(ctx, c.db.DeviceID(), signal, func(ev wire.Event) {
			if ev.Device != c.db.DeviceID() { // not our own push
				signal()
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if revoked(err) {
			return err
		}
		if time.Since(start) > time.Minute {
			b.Reset() // the stream was up for a while: reconnect promptly
		}
		wait := b.NextBackOff()
		c.opts.Logger.Info("tether event stream dropped", "err", err, "retry_in", wait)
		if sleep(ctx, wait) != nil {
			return nil
		}
	}
	return nil
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
