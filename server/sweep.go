package server

import (
	"context"
	"time"
)

// sweepBatch is the most sessions one sweep discards: a sweep is one
// short transaction, and the next comes soon.
const sweepBatch = 100

// sweep runs Store.Sweep every interval until ctx ends. The interval is
// a timer, not a time rule: what has expired is the store's to decide,
// by its own clock.
func (s *Server) sweep(ctx context.Context, interval time.Duration) {
	defer close(s.stopped)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := s.store.Sweep(ctx, s.opts.Limits, sweepBatch)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Error("sweep", "err", err)
		} else if n > 0 {
			s.opts.Logger.Info("sweep: discarded expired sessions", "sessions", n)
		}
	}
}
