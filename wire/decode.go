package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/go-json-experiment/json/jsontext"
)

// ReadChanges decodes a pull page (GET /v1/changes) from r without
// reflection: a page is the bulk of a pull, and this is the device's
// share of it. It reads what encoding/json with UseNumber would read into
// a Changes: numbers among a row's values are json.Number, member names
// match case-insensitively, unknown members are passed over. Unlike
// encoding/json it refuses invalid UTF-8, which no server writes.
func ReadChanges(r io.Reader) (Changes, error) {
	return ReadChangesHead(r, nil)
}

// ReadChangesHead is ReadChanges that also calls head, once, with where
// the page ends (Cursor, More, Wait and Partial, no rows) as soon as it
// has read them, if all four come before the rows, as AppendChanges
// writes them: a client may then ask for the next page while it reads
// this one's rows. head is not called for a page that gives any of them
// after its rows, or not at all; the page returned says the same as the
// head, unless the server gave a member twice.
func ReadChangesHead(r io.Reader, head func(Changes)) (Changes, error) {
	return readChanges(r, head, false)
}

// ReadChangesAside is ReadChangesHead for a reader that sets the rows of a
// page that says, before its rows, that it is Partial with More after it
// aside as they came (Raw) and reads their values later with a RowReader:
// when it keeps Raw, each row of Changes has every member but its values
// (Values is nil), which it does not decode. Every other page comes whole.
func ReadChangesAside(r io.Reader, head func(Changes)) (Changes, error) {
	return readChanges(r, head, true)
}

// readChanges is ReadChangesHead, and ReadChangesAside when aside.
func readChanges(r io.Reader, head func(Changes), aside bool) (Changes, error) {
	var c Changes
	var seen uint8   // of cursor, more, wait and partial, a bit each
	skimmed := false // the rows came without their values
	rec := &recorder{r: r}
	d := newRowDecoder(rec)
	err := d.object(func(name string) error {
		var err error
		switch fieldName(name) {
		case "changes":
			if head != nil && seen == 0b1111 {
				head(Changes{Cursor: c.Cursor, More: c.More, Wait: c.Wait, Partial: c.Partial})
				head = nil
			}
			skimmed = false
			if seen&8 != 0 && c.Partial { // a page to set aside: its text too
				skim := aside && seen&2 != 0 && c.More
				c.Changes, c.Raw, err = d.rawRows(rec, c.Changes[:0], skim)
				skimmed = skim && c.Raw != nil
			} else {
				c.Raw = nil
				c.Changes, err = d.rows(c.Changes[:0])
			}
		case "cursor":
			c.Cursor, err = d.str()
			seen |= 1
		case "more":
			c.More, err = d.boolean()
			seen |= 2
		case "wait":
			c.Wait, err = d.boolean()
			seen |= 4
		case "partial":
			c.Partial, err = d.boolean()
			seen |= 8
		default:
			err = d.dec.SkipValue()
		}
		return err
	})
	if err == nil && skimmed && (!c.Partial || !c.More) {
		// more or partial given again after the rows, otherwise: the
		// page is not one to set aside, and its rows come whole.
		c.Changes, err = d.wholeRows(c.Raw, c.Changes[:0])
	}
	if err != nil {
		return Changes{}, fmt.Errorf("read changes: %w", err)
	}
	return c, nil
}

// ReadBatch decodes what AppendBatch writes, a Batch, from r, as
// ReadChanges decodes a page.
func ReadBatch(r io.Reader) (Batch, error) {
	var b Batch
	d := newRowDecoder(r)
	err := d.object(func(name string) error {
		var err error
		switch fieldName(name) {
		case "rows":
			b.Rows, err = d.rows(b.Rows[:0])
		default:
			err = d.dec.SkipValue()
		}
		return err
	})
	if err != nil {
		return Batch{}, fmt.Errorf("read rows: %w", err)
	}
	return b, nil
}

// rowDecoder reads rows token by token. It keeps the names it has seen, so
// that the value names of a page's rows, the same row after row, are
// allocated once.
type rowDecoder struct {
	dec   *jsontext.Decoder
	names map[string]string
	late  bool // a row's member other than changed, increments or evict came after its values
	skim  bool // rows' values are checked for their kind and passed over
}

func newRowDecoder(r io.Reader) *rowDecoder {
	return &rowDecoder{
		dec:   jsontext.NewDecoder(r, jsontext.AllowDuplicateNames(true)),
		names: map[string]string{},
	}
}

// errKind reports a value of another JSON kind than a field wants.
func errKind(want string, got jsontext.Kind) error {
	return fmt.Errorf("want %s, got %s", want, got)
}

// object reads an object, or null, calling member for each member name
// with the decoder before its value, which member must read. A member
// that reads a struct field matches its name with fieldName.
func (d *rowDecoder) object(member func(name string) error) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '{':
	default:
		return errKind("object", tok.Kind())
	}
	for d.dec.PeekKind() != '}' {
		name, err := d.name()
		if err != nil {
			return err
		}
		if err := member(name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	_, err = d.dec.ReadToken()
	return err
}

// fieldName returns name as the Row and Changes fields spell it:
// encoding/json matches names regardless of case, by Unicode simple case
// folding (U+017F, the long s, matches s; U+212A, the Kelvin sign,
// matches k).
func fieldName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 0x80 {
			return strings.Map(foldRune, name)
		} else if c >= 'A' && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// foldRune returns the rune r's name matches as encoding/json folds it:
// the least rune of its simple folding orbit, an ASCII letter in lower
// case.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			r = r2
			break
		}
		r = r2
	}
	if r >= 'A' && r <= 'Z' {
		r += 'a' - 'A'
	}
	return r
}

// name reads an object member's name, interned.
func (d *rowDecoder) name() (string, error) {
	v, err := d.dec.ReadValue()
	if err != nil {
		return "", err
	}
	if len(v) < 2 || v[0] != '"' {
		return "", errKind("name", v.Kind())
	}
	raw := v[1 : len(v)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		if s, ok := d.names[string(raw)]; ok {
			return s, nil
		}
		s := string(raw)
		if len(d.names) < 1024 {
			d.names[s] = s
		}
		return s, nil
	}
	b, err := jsontext.AppendUnquote(nil, v)
	return string(b), err
}

// str reads a string, or null as "".
func (d *rowDecoder) str() (string, error) {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return "", err
	}
	switch tok.Kind() {
	case '"':
		return tok.String(), nil
	case 'n':
		return "", nil
	}
	return "", errKind("string", tok.Kind())
}

// boolean reads true, false, or null as false.
func (d *rowDecoder) boolean() (bool, error) {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return false, err
	}
	switch tok.Kind() {
	case 't':
		return true, nil
	case 'f', 'n':
		return false, nil
	}
	return false, errKind("boolean", tok.Kind())
}

// integer reads an integer, or null as 0.
func (d *rowDecoder) integer() (int64, error) {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return 0, err
	}
	switch tok.Kind() {
	case '0':
		return strconv.ParseInt(tok.String(), 10, 64)
	case 'n':
		return 0, nil
	}
	return 0, errKind("integer", tok.Kind())
}

// rows reads an array of rows, or null, appending them to out.
func (d *rowDecoder) rows(out []Row) ([]Row, error) {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case '[':
	default:
		return nil, errKind("array", tok.Kind())
	}
	if out == nil {
		out = []Row{}
	}
	for d.dec.PeekKind() != ']' {
		var r Row
		if err := d.row(&r); err != nil {
			return nil, fmt.Errorf("row %d: %w", len(out), err)
		}
		out = append(out, r)
	}
	_, err = d.dec.ReadToken()
	return out, err
}

// rawRows reads an array of rows, or null, as rows does, and returns the
// array's text too, as rec read it, when a RowReader reads the same rows
// from it: in every row, only changed, increments and evict follow
// values, as AppendBatch and AppendChanges write them. With skim, the
// rows it returns with the text come without their values, which it
// checks are an object or null and does not decode.
func (d *rowDecoder) rawRows(rec *recorder, out []Row, skim bool) ([]Row, []byte, error) {
	start := d.dec.InputOffset()
	rec.record(d.dec.UnreadBuffer())
	d.skim, d.late = skim, false
	rows, err := d.rows(out)
	d.skim = false
	raw := rec.stop()
	if err != nil {
		return nil, nil, err
	}
	raw = bytes.TrimLeft(raw[:d.dec.InputOffset()-start], " \t\r\n:")
	if d.late || len(raw) == 0 || raw[0] != '[' {
		if skim && d.late { // no RowReader reads it: the rows whole
			rows, err = d.wholeRows(raw, out[:0])
		}
		return rows, nil, err
	}
	return rows, raw, nil
}

// wholeRows reads the array of rows raw, values and all.
func (d *rowDecoder) wholeRows(raw []byte, out []Row) ([]Row, error) {
	sub := &rowDecoder{dec: jsontext.NewDecoder(bytes.NewReader(raw), jsontext.AllowDuplicateNames(true)), names: d.names}
	return sub.rows(out)
}

// recorder is a reader that keeps what it reads while told to.
type recorder struct {
	r   io.Reader
	on  bool
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.on {
		r.buf = append(r.buf, p[:n]...)
	}
	return n, err
}

// record starts keeping what it reads, after buffered: what its reader
// read from it already and has not used.
func (r *recorder) record(buffered []byte) {
	r.on, r.buf = true, append(make([]byte, 0, max(len(buffered), 64<<10)), buffered...)
}

// stop stops keeping what it reads, and returns what it kept.
func (r *recorder) stop() []byte {
	b := r.buf
	r.on, r.buf = false, nil
	return b
}

// row reads a row into r.
func (d *rowDecoder) row(r *Row) error {
	values := false
	return d.object(func(name string) error {
		f := fieldName(name)
		switch f {
		case "changed", "increments", "evict":
		default:
			// RowReader hands a row's values over before it reads this:
			// a second values, or a field its reader may look at.
			d.late = d.late || values
		}
		values = values || f == "values"
		return d.fieldNamed(r, f)
	})
}

// field reads the value of r's member name.
func (d *rowDecoder) field(r *Row, name string) error {
	return d.fieldNamed(r, fieldName(name))
}

// fieldNamed reads the value of r's member whose name, as fieldName
// returns it, is f.
func (d *rowDecoder) fieldNamed(r *Row, f string) error {
	var err error
	switch f {
	case "table":
		r.Table, err = d.str()
	case "id":
		r.ID, err = d.str()
	case "base":
		r.Base, err = d.integer()
	case "version":
		r.Version, err = d.integer()
	case "deleted":
		r.Deleted, err = d.boolean()
	case "hlc":
		r.HLC, err = d.str()
	case "device":
		r.Device, err = d.str()
	case "modified_by":
		r.ModifiedBy, err = d.str()
	case "values":
		if d.skim {
			if k := d.dec.PeekKind(); k != '{' && k != 'n' {
				return errKind("object", k)
			}
			return d.dec.SkipValue()
		}
		r.Values, err = d.values(r.Values)
	case "reason":
		r.Reason, err = d.str()
	case "notify":
		r.Notify, err = d.str()
	case "evict":
		r.Evict, err = d.boolean()
	case "changed":
		err = d.unmarshal(&r.Changed)
	case "increments":
		err = d.unmarshal(&r.Increments)
	default:
		err = d.dec.SkipValue()
	}
	return err
}

// values reads a row's values into m (a new map when nil); null makes
// them nil, as encoding/json does.
func (d *rowDecoder) values(m map[string]any) (map[string]any, error) {
	switch d.dec.PeekKind() {
	case 'n':
		_, err := d.dec.ReadToken()
		return nil, err
	case '{':
		if m == nil {
			m = make(map[string]any, 8)
		}
	}
	err := d.object(func(name string) error {
		v, err := d.value()
		m[name] = v
		return err
	})
	return m, err
}

// value reads a column value: a string, a json.Number, a bool or nil; an
// object or an array as encoding/json reads it into an any.
func (d *rowDecoder) value() (any, error) {
	switch d.dec.PeekKind() {
	case '{', '[':
		var v any
		err := d.unmarshal(&v)
		return v, err
	}
	tok, err := d.dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '"':
		return tok.String(), nil
	case '0':
		return json.Number(tok.String()), nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	}
	return nil, nil
}

// unmarshal reads the next value into v with encoding/json, numbers as
// json.Number: for the parts of a row a pull page seldom carries.
func (d *rowDecoder) unmarshal(v any) error {
	raw, err := d.dec.ReadValue()
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

// RowReader reads the rows of a Batch as AppendBatch writes it, one at a
// time, and hands each row's values to a function instead of a map: the
// reader of a page set aside converts them straight into the arguments of
// its insert. It is not safe for concurrent use.
type RowReader struct {
	d    *rowDecoder
	done bool
}

// NewRowReader returns a reader of the rows of the Batch r holds. Its
// "rows" member must come first, as AppendBatch writes it.
func NewRowReader(r io.Reader) (*RowReader, error) {
	d := newRowDecoder(r)
	if tok, err := d.dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, fmt.Errorf("read rows: want an object: %v", err)
	}
	if name, err := d.name(); err != nil || name != "rows" {
		return nil, fmt.Errorf("read rows: want rows first, got %q: %v", name, err)
	}
	tok, err := d.dec.ReadToken()
	switch {
	case err != nil:
		return nil, fmt.Errorf("read rows: %w", err)
	case tok.Kind() == 'n':
		return &RowReader{d: d, done: true}, nil
	case tok.Kind() != '[':
		return nil, fmt.Errorf("read rows: %w", errKind("array", tok.Kind()))
	}
	return &RowReader{d: d}, nil
}

// Next reads the next row into r, which it first resets. It calls value
// with r as read so far and each of the row's values, in the order they
// come (every field AppendBatch writes before them is read by then), and
// leaves r.Values nil. It returns io.EOF after the last row.
func (rr *RowReader) Next(r *Row, value func(r *Row, name string, v any) error) error {
	if rr.done || rr.d.dec.PeekKind() == ']' {
		rr.done = true
		return io.EOF
	}
	*r = Row{}
	d := rr.d
	err := d.object(func(name string) error {
		if fieldName(name) != "values" {
			return d.field(r, name)
		}
		return d.object(func(name string) error {
			v, err := d.value()
			if err != nil {
				return err
			}
			return value(r, name, v)
		})
	})
	if err != nil {
		return fmt.Errorf("read rows: %w", err)
	}
	return nil
}
