package wire

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendBatch appends the JSON of a Batch of rows to b, as encoding/json
// would write it (the same values; object keys may come in another order),
// without reflection: a pushed batch is encoded row by row, and this is the
// client's share of the push. Values of types other than string, int64,
// bool and nil are written by encoding/json.
func AppendBatch(b []byte, rows []Row) ([]byte, error) {
	b = append(b, `{"rows":[`...)
	var keys []string // the previous row's value keys, sorted
	var err error
	for i := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		if b, keys, err = appendRow(b, &rows[i], keys); err != nil {
			return b, err
		}
	}
	return append(b, "]}\n"...), nil
}

// AppendChanges appends the JSON of a pull page to b, as encoding/json
// would write it (the same values; object keys may come in another order,
// and <, > and & are not escaped), without reflection: this is the
// server's share of a pull. Values are written as AppendBatch writes them.
func AppendChanges(b []byte, c *Changes) ([]byte, error) {
	return AppendChangesRows(AppendChangesHead(b, c), c)
}

// AppendChangesHead appends the start of the JSON of a pull page, where
// the page ends: its cursor, more, wait and partial (even when false), up
// to its rows. A client reads them first and may ask for the next page
// while it reads the rows (ReadChangesHead); a server may send them
// before it encodes the rows.
func AppendChangesHead(b []byte, c *Changes) []byte {
	b = append(b, `{"cursor":`...)
	b = appendString(b, c.Cursor)
	b = append(b, `,"more":`...)
	b = strconv.AppendBool(b, c.More)
	b = append(b, `,"wait":`...)
	b = strconv.AppendBool(b, c.Wait)
	b = append(b, `,"partial":`...)
	b = strconv.AppendBool(b, c.Partial)
	return append(b, `,"changes":`...)
}

// AppendChangesRows appends the rest of the JSON of a pull page after
// AppendChangesHead: its rows, and the end.
func AppendChangesRows(b []byte, c *Changes) ([]byte, error) {
	if c.Changes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		var keys []string
		var err error
		for i := range c.Changes {
			if i > 0 {
				b = append(b, ',')
			}
			if b, keys, err = appendRow(b, &c.Changes[i], keys); err != nil {
				return b, err
			}
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...), nil
}

// appendRow appends the JSON of r. keys are the sorted value keys of the
// row before, reused when r has the same ones (the rows of a batch do).
func appendRow(b []byte, r *Row, keys []string) ([]byte, []string, error) {
	b = append(b, `{"table":`...)
	b = appendString(b, r.Table)
	b = append(b, `,"id":`...)
	b = appendString(b, r.ID)
	if r.Base != 0 {
		b = append(b, `,"base":`...)
		b = strconv.AppendInt(b, r.Base, 10)
	}
	if r.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, r.Version, 10)
	}
	if r.Deleted {
		b = append(b, `,"deleted":true`...)
	}
	b = append(b, `,"hlc":`...)
	b = appendString(b, r.HLC)
	for _, f := range [...]struct{ name, v string }{{"device", r.Device}, {"modified_by", r.ModifiedBy}, {"reason", r.Reason}, {"notify", r.Notify}} {
		if f.v != "" {
			b = append(b, `,"`...)
			b = append(b, f.name...)
			b = append(b, `":`...)
			b = appendString(b, f.v)
		}
	}
	b = append(b, `,"values":`...)
	if r.Values == nil {
		b = append(b, "null"...)
	} else {
		same := len(keys) == len(r.Values)
		for _, k := range keys {
			if !same {
				break
			}
			_, same = r.Values[k]
		}
		if !same {
			keys = keys[:0]
			for k := range r.Values {
				keys = append(keys, k)
			}
			slices.Sort(keys)
		}
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, r.Values[k]); err != nil {
				return b, keys, err
			}
		}
		b = append(b, '}')
	}
	if len(r.Changed) > 0 { // omitted when empty, as encoding/json does
		b = append(b, `,"changed":[`...)
		for i, c := range r.Changed {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, c)
		}
		b = append(b, ']')
	}
	b = appendIncrements(b, r.Increments)
	if r.Evict {
		b = append(b, `,"evict":true`...)
	}
	return append(b, '}'), keys, nil
}

// appendValue appends the JSON of a column value.
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case float64:
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			return appendFloat(b, x), nil
		}
	}
	js, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, js...), nil
}

// appendFloat appends f as encoding/json writes a float64: the shortest
// form, with an exponent only for the very small and the very large.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9, as there.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string: what encoding/json decodes back
// to the string it writes for s (invalid UTF-8 becomes U+FFFD, as there).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // as encoding/json writes them
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
