package sqlstore

import (
	"context"
	"fmt"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
)

// Audit implements server.Store. The log is the _tether_audit table.
func (s *Store) Audit(ctx context.Context, tenant string, after int64, limit int) ([]server.AuditEntry, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT version, tbl, id, deleted, user_name, device, session, at FROM _tether_audit
		WHERE tenant = ? AND version > ? ORDER BY version, tbl, id LIMIT ?`), tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	var out []server.AuditEntry
	for rows.Next() {
		var e server.AuditEntry
		var deleted, at any
		if err := rows.Scan(&e.Version, &e.Table, &e.ID, &deleted, &e.User, &e.Device, &e.Session, &at); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		d, err := entity.KindBool.FromDB(deleted)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		e.Deleted, _ = d.(bool)
		e.External = e.Device == server.ExternalDevice
		if e.At, err = timeOf(at); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
