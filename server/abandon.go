package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/tethersync/tether/wire"
)

// abandon drops an open push session of the calling device and the rows
// it staged (DELETE /v1/sessions/{session}); it is idempotent: a session
// that is not open is answered the same (see Store.Abandon).
func (s *Server) abandon(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	device, err := s.device(ctx, p, r)
	if err != nil {
		return nil, err
	}
	session := r.PathValue("session")
	if !deviceRE.MatchString(session) {
		return nil, fmt.Errorf("malformed session id %q: want %s: %w", clip(session), wire.SessionIDFormat, wire.ErrBadRequest)
	}
	if err := s.store.Abandon(ctx, p, device, session); err != nil {
		return nil, err
	}
	return wire.Session{Session: session}, nil
}
