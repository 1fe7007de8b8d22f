package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tethersync/tether/wire"
)

// Notifier is a store that tells subscribers when a tenant's rows change.
// Both built-in stores are: the SQLite store within its process, the
// PostgreSQL store across every process on the database (LISTEN/NOTIFY).
type Notifier interface {
	// Subscribe returns a channel that receives an event after each commit
	// of tenant's, until ctx ends. Events may be coalesced: a receiver
	// that falls behind gets the latest.
	Subscribe(ctx context.Context, tenant string) (<-chan wire.Event, error)
}

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

// heartbeat is how often an idle event stream carries a comment, so that
// proxies keep it open and clients notice a dead connection.
const heartbeat = 20 * time.Second

// events streams server-sent events: "changes" after each commit of the
// principal's tenant, with the new version and the device that pushed it.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	p, err := s.authenticate(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, ok := s.store.(Notifier)
	if !ok {
		s.fail(w, r, fmt.Errorf("this store has no live updates: %w", wire.ErrNotFound))
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		s.fail(w, r, fmt.Errorf("the connection cannot stream: %w", wire.ErrInternal))
		return
	}
	ctx := r.Context()
	ch, err := n.Subscribe(ctx, p.Tenant)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": tether events\n\n")
	flusher.Flush()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fmt.Fprint(w, ": ping\n\n")
		case ev := <-ch:
			data, _ := json.Marshal(ev)
			fmt.Fprintf(w, "event: changes\ndata: %s\n\n", data)
		}
		flusher.Flush()
	}
}
