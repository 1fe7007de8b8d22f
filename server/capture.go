package server

import (
	"context"
	"fmt"
	"time"
)

// The names captured writes carry (see Options.CaptureExternalWrites).
const (
	// ExternalDevice is the device id of the writes made directly in the
	// server database and captured: their rows carry it (wire.Row.Device,
	// the audit log's device) and their clock stamps name it. No device
	// registers under it.
	ExternalDevice = "tether-external"
	// ExternalUser is the user the audit log records for captured writes.
	ExternalUser = "external"
)

// DefaultCaptureInterval is how often a server capturing external writes
// commits those recorded since (Options.CaptureInterval).
const DefaultCaptureInterval = time.Second

// Capturer is a Store that can capture the writes made directly in its
// database, outside the server (Options.CaptureExternalWrites). The SQL
// stores are. Its methods are safe for concurrent use.
type Capturer interface {
	// CaptureExternal installs the triggers that record external writes
	// (on), replacing those there are, or drops them (off) and forgets
	// what they recorded and was not captured yet.
	CaptureExternal(ctx context.Context, on bool) error
	// Capture commits the external writes recorded so far, one commit
	// per tenant, and returns how many commits it made. Every commit of a
	// tenant captures the tenant's first.
	Capture(ctx context.Context) (int, error)
}

// useCapture installs or drops the store's capture triggers as
// Options.CaptureExternalWrites says.
func useCapture(store Store, on bool) error {
	c, ok := store.(Capturer)
	if !ok {
		if on {
			return fmt.Errorf("CaptureExternalWrites: the store cannot capture external writes")
		}
		return nil
	}
	return c.CaptureExternal(context.Background(), on)
}

// capture runs Capturer.Capture every interval until ctx ends.
func (s *Server) capture(ctx context.Context, c Capturer, interval time.Duration) {
	defer close(s.captured)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_, err := c.Capture(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			s.opts.Logger.Error("capture external writes", "err", err)
			failing = true
		case err == nil && failing:
			s.opts.Logger.Info("capture external writes: ok again")
			failing = false
		}
	}
}
