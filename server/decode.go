package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// A pushed batch is read token by token, never as a whole: a string is
// refused as soon as it passes its bound, and a structure where a column
// value belongs (an array of 31 million zeros, say) as soon as it opens.
// Memory grows with what a request holds, not with what it declares.

// batchLimits bound what decodeBatch reads.
type batchLimits struct {
	maxRows  int // rows in the batch
	maxValue int // bytes of one column value
}

// Bounds of the short strings of a row.
const (
	maxNameBytes   = 128 // table and column names
	maxNumberBytes = 64  // a JSON number's text
	maxShortBytes  = 256 // ids (MaxIDLength), stamps, device ids
)

// batchReaders holds the buffered readers batches are decoded through: a
// 32 KB buffer a small batch would otherwise allocate anew.
var batchReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// decodeBatch reads a wire.Batch from r: {"rows": [row, ...]}, strictly:
// unknown or repeated fields, a value that is not a scalar, trailing data,
// a string over its bound are errors wrapping wire.ErrBadRequest (over
// lim.maxValue or lim.maxRows, wire.ErrTooLarge). Numbers are
// json.Number, as validateRows expects.
func decodeBatch(r io.Reader, lim batchLimits) (wire.Batch, error) {
	br := batchReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil) // holds no request body while pooled
		batchReaders.Put(br)
	}()
	d := &jsonReader{r: br}
	var b wire.Batch
	sawRows := false
	err := d.object(func(key string) error {
		if key != "rows" {
			return fmt.Errorf("unknown field %q", key)
		}
		if sawRows {
			return errors.New(`field "rows" twice`)
		}
		sawRows = true
		if d.null() {
			return nil
		}
		return d.array(func() error {
			if len(b.Rows) == lim.maxRows {
				return fmt.Errorf("more than %d rows: %w", lim.maxRows, wire.ErrTooLarge)
			}
			row, err := d.row(lim)
			if err != nil {
				return fmt.Errorf("row %d: %w", len(b.Rows), err)
			}
			b.Rows = append(b.Rows, row)
			return nil
		})
	})
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return wire.Batch{}, badBody(err)
	}
	return b, nil
}

// badBody wraps a decoding error: too large stays too large, an error of
// the body's reader (its size limit, a broken gzip stream) stays what it
// is, anything else is a malformed body.
func badBody(err error) error {
	var re readError
	switch {
	case errors.As(err, &re):
		if errors.Is(re.err, wire.ErrTooLarge) || errors.Is(re.err, wire.ErrBadRequest) {
			return re.err
		}
		return fmt.Errorf("malformed body: %v: %w", re.err, wire.ErrBadRequest)
	case errors.Is(err, wire.ErrTooLarge):
		return err
	}
	return fmt.Errorf("malformed JSON body: %v: %w", err, wire.ErrBadRequest)
}

// readError is an error of the underlying reader, not of the JSON.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }

// jsonReader is a strict, bounded JSON tokenizer for batch bodies.
type jsonReader struct {
	r   *bufio.Reader
	buf bytes.Buffer // scratch for strings
	off int64        // bytes read, for error positions
}

func (d *jsonReader) readByte() (byte, error) {
	c, err := d.r.ReadByte()
	if err != nil {
		if err == io.EOF {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, readError{err}
	}
	d.off++
	return c, nil
}

// next returns the next byte that is not white space.
func (d *jsonReader) next() (byte, error) {
	for {
		c, err := d.readByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

func (d *jsonReader) unread() {
	_ = d.r.UnreadByte()
	d.off--
}

func (d *jsonReader) expect(want byte) error {
	c, err := d.next()
	if err != nil {
		return err
	}
	if c != want {
		return fmt.Errorf("offset %d: want %q, got %q", d.off, want, c)
	}
	return nil
}

// end checks that only white space follows.
func (d *jsonReader) end() error {
	c, err := d.next()
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("offset %d: data after the object (%q)", d.off, c)
}

// null consumes a null if one comes next.
func (d *jsonReader) null() bool {
	c, err := d.next()
	if err != nil {
		return false
	}
	if c != 'n' {
		d.unread()
		return false
	}
	d.unread()
	if v, err := d.literal(); err == nil && v == nil {
		return true
	}
	return false
}

// object reads {"key": value, ...}, calling field for each key with the
// reader before its value. Keys are bounded and must not repeat.
func (d *jsonReader) object(field func(key string) error) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	c, err := d.next()
	if err != nil {
		return err
	}
	if c == '}' {
		return nil
	}
	d.unread()
	for {
		if err := d.expect('"'); err != nil {
			return err
		}
		key, err := d.stringBody(maxNameBytes)
		if err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		c, err := d.next()
		if err != nil {
			return err
		}
		switch c {
		case ',':
			continue
		case '}':
			return nil
		}
		return fmt.Errorf("offset %d: want , or } in an object, got %q", d.off, c)
	}
}

// array reads [elem, ...], calling elem before each element.
func (d *jsonReader) array(elem func() error) error {
	if err := d.expect('['); err != nil {
		return err
	}
	c, err := d.next()
	if err != nil {
		return err
	}
	if c == ']' {
		return nil
	}
	d.unread()
	for {
		if err := elem(); err != nil {
			return err
		}
		c, err := d.next()
		if err != nil {
			return err
		}
		switch c {
		case ',':
			continue
		case ']':
			return nil
		}
		return fmt.Errorf("offset %d: want , or ] in an array, got %q", d.off, c)
	}
}

// row reads one row object.
func (d *jsonReader) row(lim batchLimits) (wire.Row, error) {
	var r wire.Row
	var seen []string // a row has few fields: a slice is cheaper than a map
	err := d.object(func(key string) error {
		if slices.Contains(seen, key) {
			return fmt.Errorf("field %q twice", key)
		}
		seen = append(seen, key)
		var err error
		switch key {
		case "table":
			r.Table, err = d.str(maxNameBytes)
		case "id":
			r.ID, err = d.str(maxShortBytes)
		case "hlc":
			r.HLC, err = d.str(maxShortBytes)
		case "device":
			r.Device, err = d.str(maxShortBytes)
		case "modified_by":
			r.ModifiedBy, err = d.str(maxShortBytes)
		case "base":
			r.Base, err = d.int()
		case "version":
			r.Version, err = d.int()
		case "deleted":
			r.Deleted, err = d.boolean()
		case "values":
			if d.null() {
				return nil
			}
			r.Values = map[string]any{}
			return d.object(func(col string) error {
				if _, dup := r.Values[col]; dup {
					return fmt.Errorf("column %q twice", col)
				}
				v, err := d.scalar(lim.maxValue)
				if err != nil {
					return fmt.Errorf("column %s: %w", col, err)
				}
				r.Values[col] = v
				return nil
			})
		case "changed":
			if d.null() {
				return nil
			}
			r.Changed = []string{}
			return d.array(func() error {
				if len(r.Changed) >= 1024 {
					return errors.New("more than 1024 changed columns")
				}
				s, err := d.str(maxNameBytes)
				r.Changed = append(r.Changed, s)
				return err
			})
		case "increments":
			r.Increments, err = d.increments()
		default:
			return fmt.Errorf("unknown field %q", key)
		}
		if err != nil {
			return fmt.Errorf("field %s: %w", key, err)
		}
		return nil
	})
	return r, err
}

// maxDepth is how deeply skim lets arrays and objects nest.
const maxDepth = 8

// skim reads any JSON value at nesting depth, bounded by lim: strings of
// at most lim.maxStr bytes (keys, maxNameBytes), arrays and objects of at
// most lim.maxElems elements, nested at most maxDepth deep.
func (d *jsonReader) skim(depth int, lim bodyLimit) error {
	c, err := d.next()
	if err != nil {
		return err
	}
	if (c == '{' || c == '[') && depth == maxDepth {
		return fmt.Errorf("offset %d: arrays and objects nested more than %d deep", d.off, maxDepth)
	}
	n := 0
	elem := func() error {
		if n++; n > lim.maxElems {
			return fmt.Errorf("offset %d: an array or object of more than %d elements", d.off, lim.maxElems)
		}
		return d.skim(depth+1, lim)
	}
	switch {
	case c == '{':
		d.unread()
		return d.object(func(string) error { return elem() })
	case c == '[':
		d.unread()
		return d.array(elem)
	case c == '"':
		_, err := d.stringBody(lim.maxStr)
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		d.unread()
		_, err := d.number()
		return err
	}
	d.unread()
	_, err = d.literal()
	return err
}

// str reads a string of at most max bytes.
func (d *jsonReader) str(max int) (string, error) {
	if err := d.expect('"'); err != nil {
		return "", err
	}
	return d.stringBody(max)
}

func (d *jsonReader) int() (int64, error) {
	c, err := d.next()
	if err != nil {
		return 0, err
	}
	d.unread()
	if c != '-' && (c < '0' || c > '9') {
		return 0, fmt.Errorf("offset %d: want an integer", d.off)
	}
	n, err := d.number()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(n), 10, 64)
}

func (d *jsonReader) boolean() (bool, error) {
	v, err := d.literal()
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, errors.New("want true or false")
	}
	return b, nil
}

// scalar reads a string (of at most max bytes), a number, true, false or
// null. An object or array is refused when it opens.
func (d *jsonReader) scalar(max int) (any, error) {
	c, err := d.next()
	if err != nil {
		return nil, err
	}
	switch {
	case c == '"':
		v, err := d.stringBody(max)
		var long errLong
		if errors.As(err, &long) {
			return nil, fmt.Errorf("%w (MaxValueBytes): %w", err, wire.ErrTooLarge)
		}
		return v, err
	case c == '-' || (c >= '0' && c <= '9'):
		d.unread()
		return d.number()
	case c == '{' || c == '[':
		return nil, fmt.Errorf("offset %d: a value must be a string, number, boolean or null, not an %s (a json column wants %s)", d.off,
			map[byte]string{'{': "object", '[': "array"}[c], entity.KindJSON.WireFormat())
	}
	d.unread()
	return d.literal()
}

// literal reads true, false or null.
func (d *jsonReader) literal() (any, error) {
	c, err := d.next()
	if err != nil {
		return nil, err
	}
	var word string
	var v any
	switch c {
	case 't':
		word, v = "rue", true
	case 'f':
		word, v = "alse", false
	case 'n':
		word, v = "ull", nil
	default:
		return nil, fmt.Errorf("offset %d: unexpected %q", d.off, c)
	}
	for i := 0; i < len(word); i++ {
		b, err := d.readByte()
		if err != nil {
			return nil, err
		}
		if b != word[i] {
			return nil, fmt.Errorf("offset %d: malformed literal", d.off)
		}
	}
	return v, nil
}

// number reads a JSON number, as json.Number.
func (d *jsonReader) number() (json.Number, error) {
	d.buf.Reset()
	for {
		c, err := d.readByte()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return "", err
		}
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			d.unread()
			break
		}
		if d.buf.Len() == maxNumberBytes {
			return "", fmt.Errorf("offset %d: number longer than %d characters", d.off, maxNumberBytes)
		}
		d.buf.WriteByte(c)
	}
	s := d.buf.String()
	if !json.Valid([]byte(s)) {
		return "", fmt.Errorf("offset %d: malformed number %q", d.off, s)
	}
	return json.Number(s), nil
}

// stringBody reads the rest of a string after its opening quote: at most
// max bytes once unescaped, valid UTF-8, no control characters.
func (d *jsonReader) stringBody(max int) (string, error) {
	// Most strings are short, plain and already read: taken from the
	// buffer at once.
	if buf, _ := d.r.Peek(d.r.Buffered()); len(buf) > 0 {
		for i, c := range buf[:min(len(buf), max+1)] {
			if c == '"' {
				s := string(buf[:i])
				if !utf8.ValidString(s) {
					break // the byte by byte reading says where
				}
				_, _ = d.r.Discard(i + 1)
				d.off += int64(i + 1)
				return s, nil
			}
			if c == '\\' || c < 0x20 {
				break
			}
		}
	}
	d.buf.Reset()
	for {
		c, err := d.readByte()
		if err != nil {
			return "", err
		}
		switch {
		case c == '"':
			s := d.buf.String()
			if !utf8.ValidString(s) {
				return "", fmt.Errorf("offset %d: string is not valid UTF-8", d.off)
			}
			return s, nil
		case c < 0x20:
			return "", fmt.Errorf("offset %d: control character in a string", d.off)
		case c == '\\':
			if err := d.escape(); err != nil {
				return "", err
			}
		default:
			d.buf.WriteByte(c)
		}
		if d.buf.Len() > max {
			return "", errLong{d.off, int64(max)}
		}
	}
}

// errLong is a string longer than its bound.
type errLong struct{ off, max int64 }

func (e errLong) Error() string {
	return fmt.Sprintf("offset %d: a string longer than %d bytes", e.off, e.max)
}

// escape reads an escape sequence after its backslash.
func (d *jsonReader) escape() error {
	c, err := d.readByte()
	if err != nil {
		return err
	}
	switch c {
	case '"', '\\', '/':
		d.buf.WriteByte(c)
	case 'b':
		d.buf.WriteByte('\b')
	case 'f':
		d.buf.WriteByte('\f')
	case 'n':
		d.buf.WriteByte('\n')
	case 'r':
		d.buf.WriteByte('\r')
	case 't':
		d.buf.WriteByte('\t')
	case 'u':
		r, err := d.hex4()
		if err != nil {
			return err
		}
		if utf16.IsSurrogate(r) {
			// The low half must follow as \uXXXX.
			if b1, err := d.readByte(); err != nil || b1 != '\\' {
				return fmt.Errorf("offset %d: lone surrogate in a string", d.off)
			}
			if b2, err := d.readByte(); err != nil || b2 != 'u' {
				return fmt.Errorf("offset %d: lone surrogate in a string", d.off)
			}
			lo, err := d.hex4()
			if err != nil {
				return err
			}
			if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
				return fmt.Errorf("offset %d: malformed surrogate pair", d.off)
			}
		}
		d.buf.WriteRune(r)
	default:
		return fmt.Errorf("offset %d: malformed escape \\%c", d.off, c)
	}
	return nil
}

func (d *jsonReader) hex4() (rune, error) {
	var r rune
	for range 4 {
		c, err := d.readByte()
		if err != nil {
			return 0, err
		}
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, fmt.Errorf("offset %d: malformed \\u escape", d.off)
		}
		r = r<<4 | rune(v)
	}
	return r, nil
}
