package server

import (
	"context"
	"time"
)

// sweepBatch is the most sessions one sweep discards: a sweep is one
// short transaction, and the next comes soon.
const sweepBatch = 100

// sweep discards what has expired every interval until ctx ends.
func (s *Server) sweep(ctx context.Context, sw Store, interval time.Duration) {
	defer close(s.stopped)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := sw.Sweep(ctx, s.opts.Limits, sweepBatch)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Error("sweep", "err", err)
		} else if n > 0 {
			s.opts.Logger.Info("sweep: discarded expired sessions", "sessions", n)
		}
	}
}
