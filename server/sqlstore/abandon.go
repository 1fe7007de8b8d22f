package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Abandon implements server.Store: it drops the device's open session and
// its staged rows in one transaction.
func (s *Store) Abandon(ctx context.Context, p server.Principal, device, session string) error {
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		var dev, user string
		var committed any
		err := tx.QueryRowContext(ctx, s.q(`SELECT device, user_name, committed_at FROM _tether_sessions WHERE tenant = ? AND id = ?`+s.d.ForUpdate()),
			p.Tenant, session).Scan(&dev, &user, &committed)
		switch {
		case errors.Is(err, sql.ErrNoRows), err == nil && dev != device:
			return nil // not open: nothing to abandon
		case err != nil:
			return err
		case user != p.User: // a session is its user's (G14)
			return fmt.Errorf("session %s was opened by another user: %w", session, wire.ErrForbidden)
		case committed != nil:
			return fmt.Errorf("session %s is already committed: %w", session, wire.ErrConflict)
		}
		return s.dropSession(ctx, tx, p.Tenant, session)
	})
	if err != nil && !errors.Is(err, wire.ErrForbidden) && !errors.Is(err, wire.ErrConflict) {
		return fmt.Errorf("abandon session %s: %w", session, err)
	}
	return err
}
