package server

import (
	"context"
	"net/http"
)

// snapshot serves a page of the tenant's live rows (wire.Snapshot).
func (s *Server) snapshot(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	after, limit, err := pageParams(r.URL.Query())
	if err != nil {
		return nil, err
	}
	return s.store.Snapshot(ctx, p, after, limit, s.opts.MaxPageBytes)
}
