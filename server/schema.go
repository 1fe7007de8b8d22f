package server

import (
	"fmt"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// checkDeviceSchema returns an error wrapping wire.ErrSchemaMismatch, naming
// the table and column, when a device's schema contradicts the server's:
// a table or column the server does not have, or a column of another kind
// or nullability. A device of an older app version, which lacks tables or
// columns the server has, is accepted: what it pushes changes only the
// columns it has.
func checkDeviceSchema(server, device entity.Schema) error {
	for _, dt := range device.Tables {
		st := server.Table(dt.Name)
		if st == nil {
			return fmt.Errorf("the device's table %q is not on the server (a newer app version? upgrade the server's schema first): %w", dt.Name, wire.ErrSchemaMismatch)
		}
		for _, dc := range dt.Columns {
			sc, ok := st.Column(dc.Name)
			switch {
			case !ok:
				return fmt.Errorf("the device's column %s.%s is not on the server (a newer app version? upgrade the server's schema first): %w", dt.Name, dc.Name, wire.ErrSchemaMismatch)
			case sc.Kind != dc.Kind:
				return fmt.Errorf("column %s.%s is %s on the server and %s on the device: %w", dt.Name, dc.Name, sc.Kind, dc.Kind, wire.ErrSchemaMismatch)
			case sc.Nullable != dc.Nullable:
				return fmt.Errorf("column %s.%s is %s on the server and %s on the device: %w", dt.Name, dc.Name, nullability(sc), nullability(dc), wire.ErrSchemaMismatch)
			}
		}
	}
	return nil
}

func nullability(c entity.Column) string {
	if c.Nullable {
		return "nullable"
	}
	return "not nullable"
}
