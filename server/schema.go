package server

import (
	"fmt"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// deviceSchema checks a device's schema against the server's and returns
// what the store keeps of it: the server's tables and columns the device
// names, in the server's order, so that what is stored for a device is
// never larger than the server's schema, whatever was sent.
//
// A device of an older app version, which lacks tables or columns the
// server has, is accepted: what it pushes changes only the columns it
// has. A schema that contradicts the server's (a table or column the
// server does not have, a column of another kind or nullability) is
// wire.ErrSchemaMismatch; one that is malformed (a table named twice, a
// table without columns or whose first column is not id, a column named
// twice) is wire.ErrBadRequest. Errors name the table and column.
func deviceSchema(server, device entity.Schema) (*entity.Schema, error) {
	names := make(map[string]map[string]bool, len(device.Tables))
	for i, dt := range device.Tables {
		name := clip(dt.Name)
		if names[dt.Name] != nil {
			return nil, fmt.Errorf("the device's schema names table %q twice: %w", name, wire.ErrBadRequest)
		}
		if len(dt.Columns) == 0 || dt.Columns[0].Name != "id" {
			return nil, fmt.Errorf("the device's table %q (table %d) has no columns, or a first column other than id: %w", name, i, wire.ErrBadRequest)
		}
		st := server.Table(dt.Name)
		if st == nil {
			return nil, fmt.Errorf("the device's table %q is not on the server (a newer app version? upgrade the server's schema first): %w", name, wire.ErrSchemaMismatch)
		}
		cols := make(map[string]bool, len(dt.Columns))
		for _, dc := range dt.Columns {
			col := clip(dc.Name)
			if cols[dc.Name] {
				return nil, fmt.Errorf("the device's table %s names column %q twice: %w", st.Name, col, wire.ErrBadRequest)
			}
			cols[dc.Name] = true
			sc, ok := st.Column(dc.Name)
			switch {
			case !ok:
				return nil, fmt.Errorf("the device's column %s.%s is not on the server (a newer app version? upgrade the server's schema first): %w", st.Name, col, wire.ErrSchemaMismatch)
			case sc.Kind != dc.Kind:
				return nil, fmt.Errorf("column %s.%s is %s on the server and %s on the device: %w", st.Name, sc.Name, sc.Kind, clip(string(dc.Kind)), wire.ErrSchemaMismatch)
			case sc.Nullable != dc.Nullable:
				return nil, fmt.Errorf("column %s.%s is %s on the server and %s on the device: %w", st.Name, sc.Name, nullability(sc), nullability(dc), wire.ErrSchemaMismatch)
			case sc.Counter != dc.Counter: // a device would overwrite what others add, or lose what it adds
				return nil, fmt.Errorf("column %s.%s is %s on the server and %s on the device: %w", st.Name, sc.Name, counting(sc), counting(dc), wire.ErrSchemaMismatch)
			}
		}
		names[dt.Name] = cols
	}
	out := &entity.Schema{}
	for _, st := range server.Tables {
		cols := names[st.Name]
		if cols == nil {
			continue
		}
		t := st
		t.Columns = nil
		for _, c := range st.Columns {
			if cols[c.Name] {
				t.Columns = append(t.Columns, c)
			}
		}
		out.Tables = append(out.Tables, t)
	}
	return out, nil
}

func nullability(c entity.Column) string {
	if c.Nullable {
		return "nullable"
	}
	return "not nullable"
}
