package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/tethersync/tether/wire"
)

// commit commits a session, or settles the batch that was to commit it
// (wire.CommitRequest).
func (s *Server) commit(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	device, err := s.device(ctx, p, r)
	if err != nil {
		return nil, err
	}
	var req wire.CommitRequest // {} for a plain commit
	if err := s.decode(w, r, &req); err != nil {
		return nil, err
	}
	if st := req.Settle; st != nil && (st.Seq < 0 || len(st.Digest) != 64) {
		return nil, fmt.Errorf("settle: batch %d with digest %q (want a batch number and a hex SHA-256): %w", st.Seq, st.Digest, wire.ErrBadRequest)
	}
	return s.store.Commit(ctx, p, device, r.PathValue("session"), s.resolve, s.opts.Limits, req.Settle)
}
