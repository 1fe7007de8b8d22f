package entity

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"math"
)

// Digest hashes the canonical contents of a table's rows, so that a device
// and the server can tell whether they hold the same rows without sending
// them. Add rows in id order (byte order). The server's digests (GET
// /v1/digest) and a device's Verify hold live rows only: deleted rows are
// not added (Add would count one by its id alone). Values are in their
// canonical form (Kind.FromWire or Kind.FromDB) for the table's columns
// after "id"; docs/protocol.md spells out the bytes.
type Digest struct {
	t    *Table
	h    hash.Hash
	buf  []byte
	rows int
}

// NewDigest returns an empty digest of table t.
func NewDigest(t *Table) *Digest {
	return &Digest{t: t, h: sha256.New()}
}

// Add adds one row.
func (d *Digest) Add(id string, deleted bool, vals []any) error {
	b := appendString(d.buf[:0], id)
	if deleted {
		b = append(b, 'D')
	} else {
		b = append(b, 'L')
		if len(vals) != len(d.t.Columns)-1 {
			return fmt.Errorf("digest %s %q: %d values for %d columns", d.t.Name, id, len(vals), len(d.t.Columns)-1)
		}
		for i, v := range vals {
			var err error
			if b, err = appendValue(b, v); err != nil {
				return fmt.Errorf("digest %s %q column %s: %w", d.t.Name, id, d.t.Columns[i+1].Name, err)
			}
		}
	}
	d.buf = b
	d.h.Write(b)
	d.rows++
	return nil
}

// DigestRows digests rows of ("deleted", id, the other columns of t...) as
// a database driver returns them: next and scan are a row cursor's Next and
// Scan, in id byte order. Values are made canonical with Kind.FromDB.
func DigestRows(t *Table, next func() bool, scan func(...any) error) (*Digest, error) {
	d := NewDigest(t)
	raw := make([]any, len(t.Columns)+1)
	dest := make([]any, len(raw))
	for i := range raw {
		dest[i] = &raw[i]
	}
	vals := make([]any, len(t.Columns)-1)
	for next() {
		if err := scan(dest...); err != nil {
			return nil, err
		}
		deleted, err := KindBool.FromDB(raw[0])
		if err != nil {
			return nil, fmt.Errorf("digest %s: deleted flag: %w", t.Name, err)
		}
		id, err := KindText.FromDB(raw[1])
		if err != nil {
			return nil, fmt.Errorf("digest %s: id: %w", t.Name, err)
		}
		for i, c := range t.Columns[1:] {
			if vals[i], err = c.Kind.FromDB(raw[i+2]); err != nil {
				return nil, fmt.Errorf("digest %s column %s: %w", t.Name, c.Name, err)
			}
		}
		if err := d.Add(id.(string), deleted.(bool), vals); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Rows returns the number of rows added.
func (d *Digest) Rows() int { return d.rows }

// Sum returns the hex SHA-256 of the row count and the rows added.
func (d *Digest) Sum() string {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(d.rows))
	s := sha256.Sum256(append(n[:], d.h.Sum(nil)...))
	return hex.EncodeToString(s[:])
}

// appendValue writes a type tag and a self-delimiting encoding.
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, 'n'), nil
	case string:
		return appendString(append(b, 's'), x), nil
	case int64:
		return binary.BigEndian.AppendUint64(append(b, 'i'), uint64(x)), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 'f'), math.Float64bits(x)), nil
	case bool:
		if x {
			return append(b, 't'), nil
		}
		return append(b, 'F'), nil
	case []byte:
		b = binary.AppendUvarint(append(b, 'b'), uint64(len(x)))
		return append(b, x...), nil
	}
	return b, fmt.Errorf("value of type %T is not canonical", v)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
