package server

import (
	"context"
	"time"
)

// sweepBatch is the most sessions one sweep discards: a sweep is one
// short transaction, and the next comes soon.
const sweepBatch = 100

// sweepRounds is the most Store.Sweep calls of one tick: while a call
// finds a full batch of work, the next follows at once (a busy server
// deletes more than one batch of audit entries or tombstones per
// interval), each call its own short transactions; the next tick goes on.
const sweepRounds = 100

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
		n, err := s.sweepOnce(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Error("sweep", "err", err)
		} else if n > 0 {
			s.opts.Logger.Info("sweep: discarded expired sessions", "sessions", n)
		}
	}
}

// sweepOnce calls Store.Sweep until a call finds less than a batch of
// work, at most sweepRounds times, and returns what they discarded.
func (s *Server) sweepOnce(ctx context.Context) (int, error) {
	total := 0
	for range sweepRounds {
		n, err := s.store.Sweep(ctx, s.opts.Limits, sweepBatch)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
	return total, nil
}
