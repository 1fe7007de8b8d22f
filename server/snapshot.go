package server

import (
	"context"
	"net/http"

	"github.com/tethersync/tether/wire"
)

// snapshot serves a page of the tenant's live rows (wire.Snapshot). It
// costs one unit of Options.MaxCost per snapshotRowsPerCost rows of its
// limit.
func (s *Server) snapshot(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	after, limit, err := pageParams(r.URL.Query())
	if err != nil {
		return nil, err
	}
	device := ""
	if r.Header.Get(wire.HeaderDevice) != "" {
		if device, err = s.device(ctx, p, r); err != nil {
			return nil, err
		}
	}
	release, err := s.costs.acquire(ctx, w, p.Tenant, "a snapshot page", snapshotCost(limit))
	if err != nil {
		return nil, err
	}
	defer release()
	return s.store.Snapshot(ctx, p, after, limit, s.opts.MaxPageBytes, device)
}
