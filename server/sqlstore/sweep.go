package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tethersync/tether/server"
)

// Sweep implements server.Store: it discards up to max uncommitted
// sessions idle for longer than lim.SessionIdle, of any tenant, with their
// staged rows; then, for each tenant, up to max tombstones every active
// device has pulled past; then up to max committed sessions, audit
// entries and devices past their retention, and device schemas no device
// or open session names; last, on a Compactor dialect, it gives a bounded
// number of the pages these deletions freed back to the file system.
//
// It reports what it discarded, by kind, to the observer of ctx
// (server.ObserverOf), with the number of active devices of each tenant.
func (s *Store) Sweep(ctx context.Context, lim server.Limits, max int) (int, error) {
	var info server.SweepInfo
	info.Err = s.sweep(ctx, lim.WithDefaults(), max, &info)
	server.ObserverOf(ctx).Swept(info)
	n := info.ExpiredSessions + info.Tombstones + info.CommittedSessions + info.AuditEntries + info.Devices + info.Schemas
	return n, info.Err
}

// sweep does Sweep's work, counting it in info.
func (s *Store) sweep(ctx context.Context, lim server.Limits, max int, info *server.SweepInfo) error {
	var err error
	if info.ExpiredSessions, err = s.expireSessions(ctx, lim, max); err != nil {
		return fmt.Errorf("sweep expired sessions: %w", err)
	}
	info.ActiveDevices = map[string]int{}
	if info.Tombstones, err = s.purgeTombstones(ctx, lim, max, info.ActiveDevices); err != nil {
		return fmt.Errorf("sweep tombstones: %w", err)
	}
	for _, q := range []struct {
		what, table, cond string
		before            time.Duration
		n                 *int
	}{
		{"committed sessions", "_tether_sessions", "committed_at IS NOT NULL AND committed_at < ?", lim.SessionRetention, &info.CommittedSessions},
		{"audit entries", "_tether_audit", "at < ?", lim.AuditRetention, &info.AuditEntries},
		// A revoked device stays, refused, until reinstated: forgotten,
		// it would register again.
		{"devices", "_tether_devices", "seen_at < ? AND revoked = FALSE", lim.DeviceRetention, &info.Devices},
	} {
		if *q.n, err = s.deleteOld(ctx, q.table, q.cond, max, s.d.Time(s.now().Add(-q.before))); err != nil {
			return fmt.Errorf("sweep %s: %w", q.what, err)
		}
	}
	// Device schemas go with the last device and open session that name
	// them.
	info.Schemas, err = s.deleteOld(ctx, "_tether_schemas", `NOT EXISTS (SELECT 1 FROM _tether_devices AS d WHERE d.tenant = _tether_schemas.tenant AND d.app_schema = _tether_schemas.id)
		AND NOT EXISTS (SELECT 1 FROM _tether_sessions AS o WHERE o.tenant = _tether_schemas.tenant AND o.app_schema = _tether_schemas.id AND o.committed_at IS NULL)`, max)
	if err != nil {
		return fmt.Errorf("sweep device schemas: %w", err)
	}
	if _, err := s.compact(ctx); err != nil {
		return fmt.Errorf("sweep: compact: %w", err)
	}
	return nil
}

// expireSessions discards up to max uncommitted sessions idle for longer
// than lim.SessionIdle, of any tenant, with their staged rows.
func (s *Store) expireSessions(ctx context.Context, lim server.Limits, max int) (int, error) {
	n := 0
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT tenant, id FROM _tether_sessions WHERE committed_at IS NULL
			AND coalesce(touched_at, created_at) < ? LIMIT ?`), s.d.Time(s.now().Add(-lim.SessionIdle)), max)
		if err != nil {
			return err
		}
		var expired [][2]string
		for rows.Next() {
			var tenant, id string
			if err := rows.Scan(&tenant, &id); err != nil {
				rows.Close()
				return err
			}
			expired = append(expired, [2]string{tenant, id})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, e := range expired {
			if err := s.dropSession(ctx, tx, e[0], e[1]); err != nil {
				return err
			}
		}
		n = len(expired)
		return nil
	})
	return n, err
}

// deleteOld deletes up to max rows of a bookkeeping table matching cond
// (with parameters args), by key, in one transaction, and returns how
// many it deleted.
func (s *Store) deleteOld(ctx context.Context, table, cond string, max int, args ...any) (int, error) {
	key := map[string]string{"_tether_sessions": "tenant, id", "_tether_audit": "tenant, version, tbl, id",
		"_tether_devices": "tenant, device", "_tether_schemas": "tenant, id"}[table]
	n := 0
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+key+` FROM `+table+` WHERE `+cond+` LIMIT ?`), append(args, max)...)
		if err != nil {
			return err
		}
		var keys [][]any
		for rows.Next() {
			k := make([]any, strings.Count(key, ",")+1)
			ptrs := make([]any, len(k))
			for i := range k {
				ptrs[i] = &k[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// The condition is checked again: a device seen, or a schema
		// named again, since it was read stays.
		where := strings.ReplaceAll(key, ",", " = ? AND") + " = ? AND (" + cond + ")"
		n = 0
		for _, k := range keys {
			res, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+table+` WHERE `+where), append(k, args...)...)
			if err != nil {
				return err
			}
			m, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += int(m)
		}
		return nil
	})
	return n, err
}

// purgeTombstones moves each tenant's horizon up to the oldest position an
// active device has pulled to (or, with no active device, to the latest
// version), and deletes up to max of the tombstones at or before it. It
// counts each tenant's active devices in active.
func (s *Store) purgeTombstones(ctx context.Context, lim server.Limits, most int, active map[string]int) (int, error) {
	var tenants []string
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		var err error
		tenants, err = s.strings(ctx, tx, `SELECT tenant FROM _tether_tenants`)
		return err
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, tenant := range tenants {
		err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
			horizon, devices, err := s.moveHorizon(ctx, tx, tenant, lim)
			if err != nil {
				return err
			}
			active[tenant] = devices
			purged, err := s.purgeBefore(ctx, tx, tenant, horizon, most)
			n += purged
			if err != nil {
				return err
			}
			purged, err = s.purgeCounted(ctx, tx, tenant, horizon, most)
			n += purged
			return err
		})
		if err != nil {
			return n, fmt.Errorf("tenant %s: %w", tenant, err)
		}
	}
	return n, nil
}

// moveHorizon moves the tenant's horizon up to the oldest position an
// active device has pulled to (with no active device, to the latest
// version), never past the latest version, and returns it. A device is
// active for DeviceActivity after its position last moved: a
// registration alone holds nothing back, nor do pulls that stay where
// they are. A horizon past the latest version (left by a forged
// cursor, before positions were bounded) comes back down to it. It also
// returns the number of active devices.
func (s *Store) moveHorizon(ctx context.Context, tx *sql.Tx, tenant string, lim server.Limits) (int64, int, error) {
	latest, err := s.latestVersion(ctx, tx, tenant)
	if err != nil {
		return 0, 0, err
	}
	var active sql.NullInt64
	var devices int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT min(pulled), count(*) FROM _tether_devices WHERE tenant = ? AND pulled >= 0 AND moved_at >= ? AND revoked = FALSE`),
		tenant, s.d.Time(s.now().Add(-lim.DeviceActivity))).Scan(&active, &devices); err != nil {
		return 0, 0, err
	}
	horizon, err := s.storeHorizon(ctx, tx, tenant, latest, active)
	return horizon, devices, err
}

// storeHorizon records the tenant's horizon: the oldest active position
// (active), or with none the latest version; see moveHorizon.
func (s *Store) storeHorizon(ctx context.Context, tx *sql.Tx, tenant string, latest int64, active sql.NullInt64) (int64, error) {
	horizon := latest // nobody active: every deletion is history
	if active.Valid {
		horizon = min(active.Int64, latest)
	}
	var stored int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT version FROM _tether_horizons WHERE tenant = ?`+s.d.ForUpdate()), tenant).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if horizon == 0 {
			return 0, nil
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO _tether_horizons (tenant, version) VALUES (?, ?)`), tenant, horizon)
		return horizon, err
	case err != nil:
		return 0, err
	case horizon > stored || stored > latest:
		_, err = tx.ExecContext(ctx, s.q(`UPDATE _tether_horizons SET version = ? WHERE tenant = ?`), horizon, tenant)
		return horizon, err
	}
	return stored, nil
}

// purgeBefore deletes up to most of the tenant's tombstones of each table
// strictly before the horizon: a device recorded at the horizon may not
// have stored the page that ended there.
func (s *Store) purgeBefore(ctx context.Context, tx *sql.Tx, tenant string, horizon int64, most int) (int, error) {
	n := 0
	for _, t := range s.tables {
		ids, err := s.strings(ctx, tx, `SELECT "id" FROM `+t.Name+` WHERE "_tenant" = ? AND "_deleted" AND "_version" < ? LIMIT ?`, tenant, horizon, most)
		if err != nil {
			return n, err
		}
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Name+` WHERE "_tenant" = ? AND "id" = ?`), tenant, id); err != nil {
				return n, err
			}
			if s.scope.of(t) != nil { // the tombstone's keys go with it
				if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_keys WHERE tenant = ? AND tbl = ? AND id = ?`), tenant, t.schema.Name, id); err != nil {
					return n, err
				}
			}
		}
		n += len(ids)
		if s.scope.of(t) == nil {
			continue
		}
		// Keys rows left before the horizon: every device that held them
		// has pulled past.
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id, scope_key FROM _tether_keys WHERE tenant = ? AND tbl = ? AND gone AND version < ? LIMIT ?`),
			tenant, t.schema.Name, horizon, most)
		if err != nil {
			return n, err
		}
		var left [][2]string
		for rows.Next() {
			var e [2]string
			if err := rows.Scan(&e[0], &e[1]); err != nil {
				rows.Close()
				return n, err
			}
			left = append(left, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return n, err
		}
		for _, e := range left {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_keys WHERE tenant = ? AND tbl = ? AND id = ? AND scope_key = ?`),
				tenant, t.schema.Name, e[0], e[1]); err != nil {
				return n, err
			}
		}
		n += len(left)
	}
	return n, nil
}
