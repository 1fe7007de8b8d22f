package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tethersync/tether/wire"
)

// heartbeat is how often an idle event stream carries a comment, so that
// proxies keep it open and clients notice a dead connection.
const heartbeat = 20 * time.Second

// events streams server-sent events: "changes" after each commit of the
// principal's tenant, with the new version and the device that pushed it.
// A principal holds at most Options.MaxStreams streams at once, and a
// stream ends when the credentials that opened it expire
// (Principal.Expires): the client then reconnects with new ones.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	p, err := s.authenticate(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := s.opts.Now()
	if !p.Expires.IsZero() && !p.Expires.After(now) {
		// Within the authenticator's leeway: a stream would end at once,
		// and a client reconnecting with the same token would spin. A 401
		// makes it get a new token.
		s.fail(w, r, fmt.Errorf("the token expired at %s; an event stream needs one that has not: %w",
			p.Expires.UTC().Format(time.RFC3339), wire.ErrUnauthorized))
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		s.fail(w, r, fmt.Errorf("the connection cannot stream: %w", wire.ErrInternal))
		return
	}
	ctx := r.Context()
	// A stream that names its device ends when the device is revoked.
	device, err := s.optionalDevice(ctx, p, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	release, err := s.streams.acquire(p, s.opts.MaxStreams)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	watch := s.watchDevice(p, r, device)
	ch, err := s.store.Subscribe(ctx, p.Tenant)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// With scopes, a principal hears of the commits that changed rows it
	// may see: the versions since the last event are checked first.
	var seen int64
	scoped := s.opts.Scopes != nil && len(s.opts.Scopes.Tables) > 0
	if scoped {
		if seen, err = s.store.LatestVersion(ctx, p.Tenant); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	var expired <-chan time.Time
	if !p.Expires.IsZero() {
		t := time.NewTimer(p.Expires.Sub(now))
		defer t.Stop()
		expired = t.C
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
		case <-expired:
			fmt.Fprint(w, ": token expired\n\n")
			flusher.Flush()
			return
		case <-tick.C:
			if watch.refused(ctx, true) {
				watch.end(w)
				return
			}
			fmt.Fprint(w, ": ping\n\n")
		case ev := <-ch:
			if watch.refused(ctx, false) {
				watch.end(w)
				return
			}
			if scoped && ev.Version > seen {
				visible, err := s.store.Visible(ctx, p, seen, ev.Version)
				if err == nil {
					seen = ev.Version
				}
				if err == nil && !visible {
					continue // nothing of the principal's changed
				}
			}
			data, _ := json.Marshal(ev)
			fmt.Fprintf(w, "event: changes\ndata: %s\n\n", data)
		}
		flusher.Flush()
	}
}

// streamCounts counts the open event streams of each principal of a
// server; its entries last only while streams are open. It is safe for
// concurrent use.
type streamCounts struct {
	mu sync.Mutex
	n  map[streamKey]int // no zero counts: the map holds open streams only
}

// streamKey names a principal.
type streamKey struct{ tenant, user string }

// acquire takes one of p's limit stream slots and returns the func that
// gives it back, or, when p holds limit already, an error wrapping
// wire.ErrRateLimited that names the limit.
func (c *streamCounts) acquire(p Principal, limit int) (release func(), err error) {
	k := streamKey{p.Tenant, p.User}
	c.mu.Lock()
	defer c.mu.Unlock()
	if held := c.n[k]; held >= limit {
		return nil, fmt.Errorf("this user holds %d open event streams, the most one user may hold (MaxStreams %d); close one first: %w",
			held, limit, wire.ErrRateLimited)
	}
	c.n[k]++
	return func() { c.release(k) }, nil
}

// release gives back one of k's slots.
func (c *streamCounts) release(k streamKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[k]--; c.n[k] <= 0 {
		delete(c.n, k)
	}
}
