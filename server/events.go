package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/tethersync/tether/wire"
)

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
	flusher, ok := w.(http.Flusher)
	if !ok {
		s.fail(w, r, fmt.Errorf("the connection cannot stream: %w", wire.ErrInternal))
		return
	}
	ctx := r.Context()
	ch, err := s.store.Subscribe(ctx, p.Tenant)
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
