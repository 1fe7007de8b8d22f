package sqlstore

import (
	"context"

	"github.com/tethersync/tether/server"
)

// scoping is the store's scopes (UseScopes).
type scoping struct {
	sc        *server.Scopes
	authorize server.Authorizer
}

// UseScopes implements server.Store.
func (s *Store) UseScopes(sc *server.Scopes, authorize server.Authorizer) error {
	s.scope = scoping{sc: sc, authorize: authorize}
	return nil
}

// Visible implements server.Store.
func (s *Store) Visible(ctx context.Context, p server.Principal, after, upto int64) (bool, error) {
	return true, nil
}
