package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/tethersync/tether/wire"
)

// snapshot serves a page of the tenant's live rows (wire.Snapshot).
func (s *Server) snapshot(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	after, err := ParseCursor(q.Get("cursor"))
	if err != nil {
		return nil, err
	}
	limit := wire.DefaultBatchSize
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > wire.MaxBatchSize {
			return nil, fmt.Errorf("limit %q: want 1 to %d: %w", l, wire.MaxBatchSize, wire.ErrBadRequest)
		}
	}
	return s.store.Snapshot(ctx, p, after, limit, s.opts.MaxPageBytes)
}
