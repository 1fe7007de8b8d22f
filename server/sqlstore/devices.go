package sqlstore

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// RegisterDevice implements server.Store.
func (s *Store) RegisterDevice(ctx context.Context, p server.Principal, reg server.Registration, lim server.Limits) error {
	lim = lim.WithDefaults()
	schemaID, body := "", ""
	if reg.Schema != nil {
		b, err := json.Marshal(reg.Schema)
		if err != nil {
			return fmt.Errorf("register device %s: %w", reg.Device, err)
		}
		sum := sha256.Sum256(b)
		schemaID, body = hex.EncodeToString(sum[:]), string(b)
	}
	register := func() error {
		return s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
			// Devices are keyed by tenant: the same id in another tenant is
			// another device, and nothing here tells whether one exists.
			var hash string
			var revoked any
			err := tx.QueryRowContext(ctx, s.q(`SELECT key_hash, revoked FROM _tether_devices WHERE tenant = ? AND device = ?`+s.d.ForUpdate()),
				p.Tenant, reg.Device).Scan(&hash, &revoked)
			now := s.d.Time(s.now())
			switch {
			case errors.Is(err, sql.ErrNoRows):
				var n int
				// A revoked device (a lost one) does not count: its user
				// registers the device that replaces it.
				if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM _tether_devices WHERE tenant = ? AND user_name = ? AND seen_at >= ? AND revoked = ?`),
					p.Tenant, p.User, s.d.Time(s.now().Add(-lim.DeviceActivity)), false).Scan(&n); err != nil {
					return err
				}
				if n >= lim.MaxUserDevices {
					return fmt.Errorf("user %s has %d devices seen within %v, the limit (MaxUserDevices): devices unseen for longer do not count: %w",
						p.User, n, lim.DeviceActivity, wire.ErrDeviceLimit)
				}
				if err := s.keepSchema(ctx, tx, p.Tenant, schemaID, body); err != nil {
					return err
				}
				_, err = tx.ExecContext(ctx, s.q(`INSERT INTO _tether_devices (tenant, device, user_name, created_at, seen_at, app_schema, key_hash)
					VALUES (?, ?, ?, ?, ?, ?, ?)`), p.Tenant, reg.Device, p.User, now, now, schemaID, reg.KeyHash)
				return err
			case err != nil:
				return err
			case !sameKey(hash, reg.KeyHash):
				return errOtherKey(reg.Device)
			case truth(revoked):
				return errRevoked(reg.Device)
			}
			if err := s.keepSchema(ctx, tx, p.Tenant, schemaID, body); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, s.q(`UPDATE _tether_devices SET seen_at = ?, app_schema = ? WHERE tenant = ? AND device = ?`),
				now, schemaID, p.Tenant, reg.Device)
			return err
		})
	}
	err := register()
	if err != nil && !errors.Is(err, wire.ErrDeviceKey) && !errors.Is(err, wire.ErrDeviceLimit) && !errors.Is(err, wire.ErrDeviceRevoked) {
		err = register() // a concurrent first registration of the same device or schema
	}
	if err != nil {
		return fmt.Errorf("register device %s: %w", reg.Device, err)
	}
	return nil
}

// CheckDevice implements server.Store.
func (s *Store) CheckDevice(ctx context.Context, p server.Principal, device, keyHash string) error {
	var hash string
	var revoked any
	err := s.r.QueryRowContext(ctx, s.q(`SELECT key_hash, revoked FROM _tether_devices WHERE tenant = ? AND device = ?`), p.Tenant, device).Scan(&hash, &revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("device %s is not registered for this tenant: %w", device, wire.ErrDeviceUnknown)
	case err != nil:
		return fmt.Errorf("device %s: %w", device, err)
	case !sameKey(hash, keyHash):
		return errOtherKey(device)
	case truth(revoked):
		return errRevoked(device)
	}
	return nil
}

// sameKey compares two key hashes in constant time.
func sameKey(stored, sent string) bool {
	return subtle.ConstantTimeCompare([]byte(stored), []byte(sent)) == 1
}

// errOtherKey is a request naming a device registered under another key.
func errOtherKey(device string) error {
	return fmt.Errorf("device %s is registered under another device key: a device is used only with its own key (its database's): %w",
		device, wire.ErrDeviceKey)
}

// LatestVersion implements server.Store.
func (s *Store) LatestVersion(ctx context.Context, tenant string) (int64, error) {
	v, err := s.latestVersion(ctx, s.r, tenant)
	if err != nil {
		return 0, fmt.Errorf("latest version of tenant %s: %w", tenant, err)
	}
	return v, nil
}

// latestVersion reads the tenant's counter in q, a pool or a transaction.
func (s *Store) latestVersion(ctx context.Context, q querier, tenant string) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, s.q(`SELECT version FROM _tether_tenants WHERE tenant = ?`), tenant).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// querier is a pool or a transaction.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// keepSchema stores a device schema of the tenant under its id, once.
func (s *Store) keepSchema(ctx context.Context, tx *sql.Tx, tenant, id, body string) error {
	if id == "" {
		return nil
	}
	var n int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM _tether_schemas WHERE tenant = ? AND id = ?`), tenant, id).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO _tether_schemas (tenant, id, body) VALUES (?, ?, ?)`), tenant, id, body)
	return err
}

// maxParsedSchemas bounds the cache of parsed device schemas; past it,
// the cache starts over.
const maxParsedSchemas = 1024

// deviceSchema returns the device schema id of the tenant, parsed once
// and kept.
func (s *Store) deviceSchema(ctx context.Context, tx *sql.Tx, tenant, id string) (*entity.Schema, error) {
	key := tenant + "\x00" + id
	s.schemaMu.Lock()
	sc := s.schemas[key]
	s.schemaMu.Unlock()
	if sc != nil {
		return sc, nil
	}
	var body string
	err := tx.QueryRowContext(ctx, s.q(`SELECT body FROM _tether_schemas WHERE tenant = ? AND id = ?`), tenant, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		// Swept while a registration named it again: the device
		// registers again, which stores it.
		return nil, fmt.Errorf("the device's schema %s is no longer on the server: register the device again: %w", id, wire.ErrDeviceUnknown)
	}
	if err != nil {
		return nil, fmt.Errorf("the device's schema %s: %w", id, err)
	}
	sc = new(entity.Schema)
	if err := json.Unmarshal([]byte(body), sc); err != nil {
		return nil, fmt.Errorf("the device's schema %s: %w", id, err)
	}
	s.schemaMu.Lock()
	if len(s.schemas) >= maxParsedSchemas {
		clear(s.schemas)
	}
	s.schemas[key] = sc
	s.schemaMu.Unlock()
	return sc, nil
}

// deviceColumns checks that rows, all of table t, fit the schema of the
// device that pushes them (schema id, as it registered; "" for the
// server's): no column it does not have, and every non-nullable one it
// has, in a live row.
func (s *Store) deviceColumns(ctx context.Context, tx *sql.Tx, tenant string, t *Table, schema string, rows []wire.Row) error {
	own := &t.schema
	if schema != "" {
		sc, err := s.deviceSchema(ctx, tx, tenant, schema)
		if err != nil {
			return err
		}
		if own = sc.Table(t.schema.Name); own == nil {
			return fmt.Errorf("table %s is not in the schema the device registered: %w", t.schema.Name, wire.ErrBadRequest)
		}
	}
	for i, r := range rows {
		for name := range r.Values {
			if _, ok := own.Column(name); !ok {
				return fmt.Errorf("row %d (%s %q): column %s is not in the schema the device registered: %w", i, r.Table, r.ID, name, wire.ErrBadRequest)
			}
		}
		if r.Deleted {
			continue
		}
		for _, c := range own.Columns[1:] {
			if _, ok := r.Values[c.Name]; !ok && !c.Nullable {
				return fmt.Errorf("row %d (%s %q) lacks column %s: %w", i, r.Table, r.ID, c.Name, wire.ErrBadRequest)
			}
		}
	}
	return nil
}
