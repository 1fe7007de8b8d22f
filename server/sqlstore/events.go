package sqlstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// broadcaster fans commits out to the subscribers of a tenant.
type broadcaster struct {
	mu   sync.Mutex
	subs map[string]map[chan wire.Event]struct{}
}

func newBroadcaster() *broadcaster {
	return &broadcaster{subs: map[string]map[chan wire.Event]struct{}{}}
}

func (b *broadcaster) subscribe(ctx context.Context, tenant string) <-chan wire.Event {
	ch := make(chan wire.Event, 1)
	b.mu.Lock()
	if b.subs[tenant] == nil {
		b.subs[tenant] = map[chan wire.Event]struct{}{}
	}
	b.subs[tenant][ch] = struct{}{}
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.subs[tenant], ch)
		if len(b.subs[tenant]) == 0 {
			delete(b.subs, tenant)
		}
		b.mu.Unlock()
	}()
	return ch
}

// publish delivers ev to every subscriber of tenant without blocking: a
// subscriber with an event pending gets the newer one instead.
func (b *broadcaster) publish(tenant string, ev wire.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs[tenant] {
		select {
		case ch <- ev:
		default:
			select { // replace the pending event with the newer one
			case <-ch:
			default:
			}
			select {
			case ch <- ev:
			default:
			}
		}
	}
}

// publishAll delivers ev to every subscriber of every tenant.
func (b *broadcaster) publishAll(ev wire.Event) {
	b.mu.Lock()
	tenants := make([]string, 0, len(b.subs))
	for t := range b.subs {
		tenants = append(tenants, t)
	}
	b.mu.Unlock()
	for _, t := range tenants {
		b.publish(t, ev)
	}
}

// committed tells the tenant's listeners in this process of a fresh
// commit (a CrossProcess dialect told every process inside the commit).
func (s *Store) committed(p server.Principal, device string, c wire.Commit, fresh bool) {
	if _, cross := s.d.(CrossProcess); fresh && !cross {
		s.events.publish(p.Tenant, wire.Event{Version: c.Version, Device: device})
	}
}

// observeCommit tells the observer of ctx (server.ObserverOf) of a
// session's first commit, which took since start.
func observeCommit(ctx context.Context, p server.Principal, device string, c wire.Commit, start time.Time) {
	server.ObserverOf(ctx).Committed(server.CommitInfo{Tenant: p.Tenant, Device: device, Applied: c.Applied,
		Conflicts: c.Conflicts, Duration: time.Since(start)})
}

// Subscribe implements server.Store. With a CrossProcess dialect the
// commits of every server process on the database are seen; otherwise
// those of this process.
func (s *Store) Subscribe(ctx context.Context, tenant string) (<-chan wire.Event, error) {
	cross, ok := s.d.(CrossProcess)
	if !ok {
		return s.events.subscribe(ctx, tenant), nil
	}
	s.listenOnce.Do(func() {
		lctx, stop := context.WithCancel(context.Background())
		s.stop = stop
		go s.listen(lctx, cross)
	})
	ch := s.events.subscribe(ctx, tenant)
	select { // so that no commit after Subscribe returns is missed
	case <-s.listenReady:
		return ch, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("listen for changes: no connection: %w", wire.ErrUnavailable)
	}
}

// listen relays notices to the subscribers until ctx ends, listening again
// with capped, jittered backoff when the connection fails. After that
// every subscriber gets an event, since notices may have been missed
// meanwhile. It logs the first failure and the recovery, not each retry.
func (s *Store) listen(ctx context.Context, cross CrossProcess) {
	defer close(s.stopped)
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(10*time.Second),
		backoff.WithMaxElapsedTime(0), // until the store closes
	)
	failures := 0
	first := true
	for ctx.Err() == nil {
		err := cross.Listen(ctx, func() {
			if first {
				close(s.listenReady)
				first = false
			} else {
				s.events.publishAll(wire.Event{})
			}
			if failures > 0 {
				s.log.Info("sqlstore: listening for other processes' commits again", "dialect", s.d.Name(), "failures", failures)
			}
			failures = 0
			b.Reset()
		}, func(n Notice) {
			s.events.publish(n.Tenant, wire.Event{Version: n.Version, Device: n.Device})
		})
		if ctx.Err() != nil {
			return
		}
		if failures++; failures == 1 {
			s.log.Warn("sqlstore: listening for other processes' commits failed; retrying with backoff", "dialect", s.d.Name(), "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.NextBackOff()):
		}
	}
}
