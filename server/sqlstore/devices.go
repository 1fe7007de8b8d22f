package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// RegisterDevice implements server.Store.
func (s *Store) RegisterDevice(ctx context.Context, p server.Principal, device string, schema *entity.Schema) error {
	own := ""
	if schema != nil {
		b, err := json.Marshal(schema)
		if err != nil {
			return fmt.Errorf("register device %s: %w", device, err)
		}
		own = string(b)
	}
	register := func() error {
		return s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
			// Devices are keyed by tenant: the same id in another tenant is
			// another device, and nothing here tells whether one exists.
			var known string
			err := tx.QueryRowContext(ctx, s.q(`SELECT device FROM _tether_devices WHERE tenant = ? AND device = ?`+s.d.ForUpdate()),
				p.Tenant, device).Scan(&known)
			now := s.d.Time(s.now())
			switch {
			case errors.Is(err, sql.ErrNoRows):
				_, err = tx.ExecContext(ctx, s.q(`INSERT INTO _tether_devices (tenant, device, user_name, created_at, seen_at, app_schema) VALUES (?, ?, ?, ?, ?, ?)`),
					p.Tenant, device, p.User, now, now, own)
				return err
			case err != nil:
				return err
			}
			_, err = tx.ExecContext(ctx, s.q(`UPDATE _tether_devices SET seen_at = ?, app_schema = ? WHERE tenant = ? AND device = ?`), now, own, p.Tenant, device)
			return err
		})
	}
	err := register()
	if err != nil {
		err = register() // a concurrent first registration of the same device
	}
	if err != nil {
		return fmt.Errorf("register device %s: %w", device, err)
	}
	return nil
}

// deviceColumns checks that rows, all of table t, fit the schema of the
// device that pushes them (cols, as it registered; "" for the server's):
// no column it does not have, and every non-nullable one it has, in a live
// row.
func deviceColumns(t *Table, cols string, rows []wire.Row) error {
	own := &t.schema
	if cols != "" {
		var schema entity.Schema
		if err := json.Unmarshal([]byte(cols), &schema); err != nil {
			return fmt.Errorf("the device's schema: %w", err)
		}
		if own = schema.Table(t.schema.Name); own == nil {
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
