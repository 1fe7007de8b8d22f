package server

import (
	"context"
	"net/http"
)

// snapshot serves a page of the tenant's live rows (wire.Snapshot). It
// costs one unit of Options.MaxCost per snapshotRowsPerCost rows of its
// limit.
func (s *Server) snapshot(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	after, limit, err := pageParams(r.URL.Query())
	if err != nil {
		return nil, err
	}
	device, err := s.optionalDevice(ctx, p, r)
	if err != nil {
		return nil, err
	}
	release, err := s.costs.acquire(ctx, w, p.Tenant, "a snapshot page", snapshotCost(limit))
	if err != nil {
		return nil, err
	}
	defer release()
	snap, err := s.store.Snapshot(ctx, p, after, limit, s.opts.MaxPageBytes, device)
	if err != nil {
		return nil, err
	}
	s.observer().RowsPulled(p.Tenant, len(snap.Rows))
	return snap, nil
}
