package sqlstore

import (
	"encoding/json"
	"fmt"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// rowCols are the bookkeeping columns read after a table's own columns by
// scanRow, in its order.
const rowCols = `"_version", "_deleted", "_hlc", "_modified_by", "_origin", "_reason", "_notify"`

// scanRow reads t's columns, then rowCols, then extra destinations, from a
// row of either store (scan is sql.Row.Scan, sql.Rows.Scan or pgx's).
func scanRow(t *entity.Table, scan func(...any) error, extra ...any) (wire.Row, error) {
	raw := make([]any, len(t.Columns))
	dest := make([]any, 0, len(raw)+5+len(extra))
	for i := range raw {
		dest = append(dest, &raw[i])
	}
	r := wire.Row{Table: t.Name}
	var deleted any
	dest = append(dest, &r.Version, &deleted, &r.HLC, &r.ModifiedBy, &r.Device, &r.Reason, &r.Notify)
	if err := scan(append(dest, extra...)...); err != nil {
		return wire.Row{}, err
	}
	return r, setRow(t, &r, deleted, raw)
}

// scanStaged reads a staged row: t's columns, then base, deleted, stamp,
// the changed columns (a JSON array) and the columns it holds (present).
// Its values are those of the columns it holds.
func scanStaged(t *entity.Table, scan func(...any) error) (wire.Row, error) {
	raw := make([]any, len(t.Columns))
	dest := make([]any, 0, len(raw)+5)
	for i := range raw {
		dest = append(dest, &raw[i])
	}
	r := wire.Row{Table: t.Name}
	var deleted any
	var changed, present string
	if err := scan(append(dest, &r.Base, &deleted, &r.HLC, &changed, &present)...); err != nil {
		return wire.Row{}, fmt.Errorf("read staged row: %w", err)
	}
	if err := json.Unmarshal([]byte(changed), &r.Changed); err != nil {
		return wire.Row{}, fmt.Errorf("read staged row: changed columns: %w", err)
	}
	if err := setRow(t, &r, deleted, raw); err != nil {
		return wire.Row{}, fmt.Errorf("staged row: %w", err)
	}
	for i, c := range t.Columns[1:] {
		if present != "" && (i >= len(present) || present[i] != '1') {
			delete(r.Values, c.Name)
		}
	}
	return r, nil
}

// setRow sets r's deleted flag, id and values from the values a driver
// scanned: deleted as SQLite's integer or PostgreSQL's boolean, raw in t's
// column order.
func setRow(t *entity.Table, r *wire.Row, deleted any, raw []any) error {
	d, err := entity.KindBool.FromDB(deleted)
	if err != nil {
		return fmt.Errorf("%s deleted flag: %w", t.Name, err)
	}
	r.Deleted, _ = d.(bool)
	r.Values = make(map[string]any, len(t.Columns)-1)
	for i, c := range t.Columns {
		v, err := c.Kind.FromDB(raw[i])
		if err != nil {
			return fmt.Errorf("%s column %s: %w", t.Name, c.Name, err)
		}
		if i == 0 {
			r.ID, _ = v.(string)
			continue
		}
		r.Values[c.Name] = v
	}
	return nil
}
