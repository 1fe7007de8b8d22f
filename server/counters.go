package server

import (
	"fmt"
	"slices"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// increments reads a row's "increments": null, or an array of at most
// wire.MaxIncrementsPerRow objects {"id", "column", "delta"}.
func (d *jsonReader) increments() ([]wire.Increment, error) {
	if d.null() {
		return nil, nil
	}
	incs := []wire.Increment{}
	err := d.array(func() error {
		if len(incs) == wire.MaxIncrementsPerRow {
			return fmt.Errorf("more than %d increments: %w", wire.MaxIncrementsPerRow, wire.ErrTooLarge)
		}
		var inc wire.Increment
		var seen []string
		err := d.object(func(key string) error {
			if slices.Contains(seen, key) {
				return fmt.Errorf("field %q twice", key)
			}
			seen = append(seen, key)
			var err error
			switch key {
			case "id":
				inc.ID, err = d.str(maxShortBytes)
			case "column":
				inc.Column, err = d.str(maxNameBytes)
			case "delta":
				inc.Delta, err = d.int()
			default:
				return fmt.Errorf("unknown field %q", key)
			}
			if err != nil {
				return fmt.Errorf("field %s: %w", key, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("increment %d: %w", len(incs), err)
		}
		incs = append(incs, inc)
		return nil
	})
	return incs, err
}

// validateIncrements checks a pushed row's increments against t: each
// names a counter column of t and carries a well-formed id, and no id
// comes twice. Errors wrap wire.ErrBadRequest (too
// many, wire.ErrTooLarge).
func validateIncrements(t *entity.Table, r *wire.Row) error {
	if len(r.Increments) == 0 {
		r.Increments = nil
		return nil
	}
	if len(r.Increments) > wire.MaxIncrementsPerRow {
		return fmt.Errorf("%d increments, more than the limit of %d: %w", len(r.Increments), wire.MaxIncrementsPerRow, wire.ErrTooLarge)
	}
	seen := make(map[string]bool, len(r.Increments))
	for i, inc := range r.Increments {
		c, ok := t.Column(inc.Column)
		switch {
		case !ok || !c.Counter:
			return fmt.Errorf("increment %d: column %q is not a counter of table %s: %w", i, inc.Column, t.Name, wire.ErrBadRequest)
		case !wire.ValidIncrementID(inc.ID):
			return fmt.Errorf("increment %d: malformed id %q (want a UUID, lower-case): %w", i, clip(inc.ID), wire.ErrBadRequest)
		case seen[inc.ID]:
			return fmt.Errorf("increment %d: id %s appears twice: %w", i, inc.ID, wire.ErrBadRequest)
		}
		seen[inc.ID] = true
	}
	return nil
}

// counting names whether c is a counter, for messages.
func counting(c entity.Column) string {
	if c.Counter {
		return "a counter"
	}
	return "not a counter"
}
