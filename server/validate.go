package server

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// MaxIDLength is the longest row id the server accepts, in bytes.
const MaxIDLength = 200

// stamping says whose clock stamps a batch may carry, and what is too far
// ahead.
type stamping struct {
	device string        // the authenticated device: every stamp is its
	now    time.Time     // the server's clock
	skew   time.Duration // stamps past now+skew are replaced
}

// validateRows checks pushed rows against the schema and converts their
// values to canonical form in place. All rows must belong to one table.
// Stamps must be the device's; one further ahead of the server's clock than
// the skew allows is replaced by the server's, so that a wrong device
// clock neither wins last-writer-wins for long nor poisons other devices'
// clocks (G7). Errors wrap wire.ErrBadRequest and name the row and column
// at fault.
func validateRows(schema entity.Schema, rows []wire.Row, st stamping) error {
	if len(rows) == 0 {
		return fmt.Errorf("batch has no rows: %w", wire.ErrBadRequest)
	}
	if len(rows) > wire.MaxBatchSize {
		return fmt.Errorf("batch has %d rows, more than the limit of %d: %w", len(rows), wire.MaxBatchSize, wire.ErrTooLarge)
	}
	t := schema.Table(rows[0].Table)
	if t == nil {
		return fmt.Errorf("row 0: unknown table %q: %w", rows[0].Table, wire.ErrBadRequest)
	}
	seen := make(map[string]bool, len(rows))
	for i := range rows {
		r := &rows[i]
		if err := validateRow(t, r, st); err != nil {
			return fmt.Errorf("row %d (%s %q): %w", i, r.Table, r.ID, err)
		}
		if seen[r.ID] {
			return fmt.Errorf("row %d: id %q appears twice in the batch: %w", i, r.ID, wire.ErrBadRequest)
		}
		seen[r.ID] = true
	}
	return nil
}

func validateRow(t *entity.Table, r *wire.Row, st stamping) error {
	switch {
	case r.Table != t.Name:
		return fmt.Errorf("batch mixes tables %q and %q: %w", t.Name, r.Table, wire.ErrBadRequest)
	case r.ID == "":
		return fmt.Errorf("missing id: %w", wire.ErrBadRequest)
	case len(r.ID) > MaxIDLength || !utf8.ValidString(r.ID) || hasControl(r.ID):
		return fmt.Errorf("malformed id (at most %d bytes of printable UTF-8): %w", MaxIDLength, wire.ErrBadRequest)
	case r.Base < 0:
		return fmt.Errorf("negative base version %d: %w", r.Base, wire.ErrBadRequest)
	}
	ms, _, device, err := wire.ParseStamp(r.HLC)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", err, wire.ErrBadRequest)
	case device != st.device:
		return fmt.Errorf("clock stamp %q is not of device %s, which sends it: %w", r.HLC, st.device, wire.ErrBadRequest)
	case ms > st.now.Add(st.skew).UnixMilli():
		r.HLC = wire.FormatStamp(st.now.UnixMilli(), 0, st.device)
		r.Restamped = true
	}
	if err := canonicalValues(t, r); err != nil {
		return err
	}
	if err := validateIncrements(t, r); err != nil {
		return err
	}
	if r.Values == nil {
		r.Values = map[string]any{}
	}
	// A column the row lacks is not written (a device of an older app
	// version does not have it); the store checks the row against the
	// device's schema.
	r.Device, r.ModifiedBy, r.Version = "", "", 0 // set by the server, never by the payload (G8)
	r.Reason, r.Notify = "", ""
	if r.Changed != nil {
		changed, err := changedColumns(t, r.Changed)
		if err != nil {
			return err
		}
		r.Changed = changed
	}
	return nil
}

// canonicalValues converts r's values to canonical form, in place.
func canonicalValues(t *entity.Table, r *wire.Row) error {
	for name, v := range r.Values {
		c, ok := t.Column(name)
		if !ok || name == "id" {
			return fmt.Errorf("unknown column %q: %w", name, wire.ErrBadRequest)
		}
		x, err := c.Kind.FromWire(v)
		if err != nil {
			return fmt.Errorf("column %s: %v: %w", name, err, wire.ErrBadRequest)
		}
		if s, ok := x.(string); ok && strings.IndexByte(s, 0) >= 0 {
			// PostgreSQL text cannot hold NUL; refuse it on every store.
			return fmt.Errorf("column %s: text contains a NUL character: %w", name, wire.ErrBadRequest)
		}
		if x == nil && !c.Nullable && !r.Deleted {
			return fmt.Errorf("column %s: null in a non-nullable column: %w", name, wire.ErrBadRequest)
		}
		r.Values[name] = x
	}
	return nil
}

// changedColumns returns the column names of a row's Changed list,
// checked against t, without repeats and sorted.
func changedColumns(t *entity.Table, names []string) ([]string, error) {
	seen := map[string]bool{}
	var changed []string
	for _, name := range names {
		if _, ok := t.Column(name); !ok || name == "id" {
			return nil, fmt.Errorf("changed column %q: unknown column: %w", name, wire.ErrBadRequest)
		}
		if !seen[name] {
			seen[name] = true
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	return changed, nil
}

// hasControl reports whether s holds a control character.
func hasControl(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}
