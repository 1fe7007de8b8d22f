package server_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
)

// sweepCounter is a store that only counts its sweeps.
type sweepCounter struct {
	server.Store // nil: the sweep calls nothing else
	sweeps       atomic.Int64
}

func (s *sweepCounter) Schema() entity.Schema { return entity.Schema{} }

func (s *sweepCounter) UseScopes(*server.Scopes, server.Authorizer) error { return nil }

func (s *sweepCounter) Sweep(ctx context.Context, lim server.Limits, max int) (int, error) {
	if lim != (server.Limits{}).WithDefaults() || max <= 0 {
		panic("sweep without the limits")
	}
	s.sweeps.Add(1)
	return 0, nil
}

// The server sweeps its store every SweepInterval until Close, and not at
// all when the interval is negative.
func TestSweepInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &sweepCounter{}
		s, err := server.New(store, server.Options{})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3*server.DefaultSweepInterval + time.Second)
		synctest.Wait()
		if got := store.sweeps.Load(); got != 3 {
			t.Errorf("%d sweeps in 3 intervals, want 3", got)
		}
		s.Close()
		time.Sleep(2 * server.DefaultSweepInterval)
		if got := store.sweeps.Load(); got != 3 {
			t.Errorf("%d sweeps after Close, want still 3", got)
		}

		off := &sweepCounter{}
		s, err = server.New(off, server.Options{SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		time.Sleep(3 * server.DefaultSweepInterval)
		if got := off.sweeps.Load(); got != 0 {
			t.Errorf("%d sweeps with SweepInterval -1, want none", got)
		}
	})
}
