package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/tethersync/tether/wire"
)

// digest serves the digests of the tenant's live rows, of the tables
// and columns a POST names, or of every table (wire.Digests).
func (s *Server) digest(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	var req wire.DigestRequest
	if r.Method == http.MethodPost {
		if err := s.decode(w, r, &req); err != nil {
			return nil, err
		}
		for name := range req.Columns {
			if s.store.Schema().Table(name) == nil {
				return nil, fmt.Errorf("digest: unknown table %q: %w", name, wire.ErrBadRequest)
			}
		}
	}
	var out wire.Digests
	for _, t := range s.store.Schema().Tables {
		var cols []string
		if req.Columns != nil {
			if cols = req.Columns[t.Name]; cols == nil {
				continue // not one of the device's tables
			}
		}
		td, err := s.store.Digest(ctx, p, t.Name, cols)
		if err != nil {
			return nil, err
		}
		out.Tables = append(out.Tables, td)
	}
	return out, nil
}
