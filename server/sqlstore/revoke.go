package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tethersync/tether/wire"
)

// ErrDeviceNotFound is returned by SetDeviceRevoked for a device the
// tenant has no registration of. It wraps wire.ErrNotFound.
var ErrDeviceNotFound = fmt.Errorf("device not found: %w", wire.ErrNotFound)

// SetDeviceRevoked revokes (revoked true) or reinstates (false) a device
// of tenant: a lost or stolen one. From when it returns, every request
// naming the device is refused with wire.ErrDeviceRevoked (403
// "device_revoked"), its registration too, until it is reinstated; a
// request that had read the device before may still finish. Revoking
// discards the device's uncommitted push sessions with what they staged,
// waiting for a commit under way: rows the device pushed and did not
// commit are never applied. A reinstated device syncs again (its
// unpushed rows go up in a new session); when the sweep purged history it
// had not pulled while revoked, it rebuilds from a snapshot. The sweep
// keeps a revoked device however long it stays unseen, so that it stays
// refused, and leaves it out of the tombstone horizon and out of its
// user's device count (Limits.MaxUserDevices).
//
// It returns an error wrapping ErrDeviceNotFound when tenant has no such
// device. It is safe for concurrent use, and from another process than
// the server's.
func (s *Store) SetDeviceRevoked(ctx context.Context, tenant, device string, revoked bool) error {
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		var was any
		err := tx.QueryRowContext(ctx, s.q(`SELECT revoked FROM _tether_devices WHERE tenant = ? AND device = ?`+s.d.ForUpdate()),
			tenant, device).Scan(&was)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("tenant %s has no device %s: %w", tenant, device, ErrDeviceNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE _tether_devices SET revoked = ? WHERE tenant = ? AND device = ?`),
			revoked, tenant, device); err != nil {
			return err
		}
		if !revoked {
			return nil
		}
		return s.dropOpenSessions(ctx, tx, tenant, device)
	})
	if err != nil {
		verb := "reinstate"
		if revoked {
			verb = "revoke"
		}
		return fmt.Errorf("%s device %s: %w", verb, device, err)
	}
	return nil
}

// dropOpenSessions discards the uncommitted sessions of a device, of
// every user, with their staged rows. Locking them first waits for a
// commit of one under way.
func (s *Store) dropOpenSessions(ctx context.Context, tx *sql.Tx, tenant, device string) error {
	open, err := s.strings(ctx, tx, `SELECT id FROM _tether_sessions WHERE tenant = ? AND device = ? AND committed_at IS NULL`+s.d.ForUpdate(),
		tenant, device)
	if err != nil {
		return err
	}
	for _, id := range open {
		if err := s.dropSession(ctx, tx, tenant, id); err != nil {
			return fmt.Errorf("drop session %s: %w", id, err)
		}
	}
	return nil
}

// errRevoked is a request naming a revoked device.
func errRevoked(device string) error {
	return fmt.Errorf("device %s was revoked by the server's operator: it may not sync until reinstated: %w", device, wire.ErrDeviceRevoked)
}
