package wire

import "strconv"

// Counters: a column tagged `db:"col,counter"` adds up instead of being
// overwritten. A device records each change of such a column as an
// Increment, pushes the increments it has not had acknowledged with the
// row (Row.Increments), and the server adds each one to its total exactly
// once, remembering the ids it applied. The answer to the commit carries
// the rows the device pushed as the server holds them, when they differ
// from what it sent (Commit.Counted).

// MaxIncrementsPerRow is the most increments a pushed row may carry: a
// device with more for a row sends the rest with a later push.
const MaxIncrementsPerRow = 10000

// Increment is one change of a counter column of a pushed row: Delta,
// the new value minus the old, added to the server's total once, however
// many times the increment is pushed.
type Increment struct {
	// ID identifies the increment: a UUID the device made (see
	// ValidIncrementID).
	ID     string `json:"id"`
	Column string `json:"column"`
	Delta  int64  `json:"delta"`
}

// ValidIncrementID reports whether id is a well-formed increment id: a
// UUID in its 36-character text form, lower-case hex digits and dashes
// (8-4-4-4-12).
func ValidIncrementID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// appendIncrements appends the "increments" field of a row, omitted when
// empty as encoding/json does.
func appendIncrements(b []byte, incs []Increment) []byte {
	if len(incs) == 0 {
		return b
	}
	b = append(b, `,"increments":[`...)
	for i, inc := range incs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, inc.ID)
		b = append(b, `,"column":`...)
		b = appendString(b, inc.Column)
		b = append(b, `,"delta":`...)
		b = strconv.AppendInt(b, inc.Delta, 10)
		b = append(b, '}')
	}
	return append(b, ']')
}
