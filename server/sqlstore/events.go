package sqlstore

import (
	"context"
	"sync"

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
