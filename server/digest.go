package server

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// digest serves the digests of the tenant's live rows, of the tables
// and columns a POST names, or of every table (wire.Digests). It costs
// one unit of Options.MaxCost per column digested.
func (s *Server) digest(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	var req wire.DigestRequest
	if r.Method == http.MethodPost {
		if err := s.decode(w, r, &req); err != nil {
			return nil, err
		}
		if err := checkDigestColumns(s.store.Schema(), req.Columns); err != nil {
			return nil, err
		}
	}
	var cost int64
	for _, t := range s.store.Schema().Tables {
		if req.Columns == nil {
			cost += int64(len(t.Columns))
		} else {
			cost += int64(len(req.Columns[t.Name]))
		}
	}
	release, err := s.opts.costs.acquire(ctx, w, "a digest of "+fmt.Sprint(cost)+" columns", cost)
	if err != nil {
		return nil, err
	}
	defer release()
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

// checkDigestColumns returns an error wrapping wire.ErrBadRequest, naming
// the problem, unless every table of columns is the schema's and its
// columns are the table's, id first, none twice (so at most the table's
// columns, and at least id).
func checkDigestColumns(schema entity.Schema, columns map[string][]string) error {
	for _, name := range slices.Sorted(maps.Keys(columns)) {
		t := schema.Table(name)
		if t == nil {
			return fmt.Errorf("digest: unknown table %q: %w", clip(name), wire.ErrBadRequest)
		}
		cols := columns[name]
		if len(cols) == 0 {
			return fmt.Errorf("digest %s: no columns (want id first, then others of the table): %w", name, wire.ErrBadRequest)
		}
		if cols[0] != "id" {
			return fmt.Errorf("digest %s: first column %q, want id: %w", name, clip(cols[0]), wire.ErrBadRequest)
		}
		seen := make(map[string]bool, len(cols))
		for _, c := range cols {
			if _, ok := t.Column(c); !ok {
				return fmt.Errorf("digest %s: unknown column %q: %w", name, clip(c), wire.ErrBadRequest)
			}
			if seen[c] {
				return fmt.Errorf("digest %s: column %q named twice: %w", name, c, wire.ErrBadRequest)
			}
			seen[c] = true
		}
	}
	return nil
}
