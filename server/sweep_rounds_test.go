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

// busyStore is a store whose sweeps find a full batch of work each time,
// until work runs out.
type busyStore struct {
	server.Store // nil: the sweep calls nothing else
	work         atomic.Int64
	sweeps       atomic.Int64
}

func (s *busyStore) Schema() entity.Schema { return entity.Schema{} }

func (s *busyStore) UseScopes(*server.Scopes, server.Authorizer) error { return nil }

func (s *busyStore) Sweep(ctx context.Context, lim server.Limits, max int) (int, error) {
	s.sweeps.Add(1)
	n := min(int64(max), s.work.Load())
	s.work.Add(-n)
	return int(n), nil
}

// A sweep that finds a full batch goes on at once, so that a busy server
// deletes what expires faster than one batch per interval; it stops when
// a batch is not full, and within a bounded number of batches per tick.
func TestSweepKeepsUpWithWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &busyStore{}
		store.work.Store(250) // three batches of 100: 100, 100, 50
		s, err := server.New(store, server.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		time.Sleep(server.DefaultSweepInterval + time.Second)
		synctest.Wait()
		if got, left := store.sweeps.Load(), store.work.Load(); got != 3 || left != 0 {
			t.Errorf("one tick: %d Store.Sweep calls, %d left, want 3 calls and nothing left", got, left)
		}
		store.work.Store(1 << 40) // more than any tick can do
		time.Sleep(server.DefaultSweepInterval)
		synctest.Wait()
		if got := store.sweeps.Load() - 3; got < 2 || got > 1000 {
			t.Errorf("a tick with endless work made %d Store.Sweep calls, want several and a bounded number", got)
		}
	})
}
