package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/tethersync/tether/internal/gzpool"
	"github.com/tethersync/tether/wire"
)

// bodyLimit bounds one kind of request body.
type bodyLimit struct {
	name     string // what the limit is, for the 413's message
	maxBytes int64  // after decompression
	maxElems int    // elements of one array or object (decode only)
	maxStr   int    // bytes of one string (decode only)
}

// Bounds of the bodies read by decode: a session's opening and a commit
// are a few ids; a registration's schema and a digest's columns are at
// most the server schema's tables and columns (a device's schema is a
// subset of the server's), with room for a newer app's few more.
const (
	smallBodyBytes    = 64 << 10
	smallBodyElems    = 16
	schemaSlackElems  = 16
	schemaColumnBytes = 1 << 10 // a column's JSON, its strings at their bounds
)

// smallBody is the limit of bodies of a few ids.
var smallBody = bodyLimit{name: "the limit of this body", maxBytes: smallBodyBytes, maxElems: smallBodyElems, maxStr: maxShortBytes}

// schemaBody returns the limit of bodies that hold at most the server
// schema's tables and columns: a registration, a digest request.
func (s *Server) schemaBody() bodyLimit {
	schema := s.store.Schema()
	elems, cols := len(schema.Tables), 0
	for _, t := range schema.Tables {
		elems = max(elems, len(t.Columns))
		cols += len(t.Columns)
	}
	// Strings are bounded by the body alone: they cost what they weigh,
	// where an element costs a struct (a Table, a Column) per byte or two.
	lim := bodyLimit{
		name:     "the limit of this body, from the server schema's size",
		maxBytes: min(s.opts.MaxBodyBytes, smallBodyBytes+int64(cols+len(schema.Tables))*schemaColumnBytes),
		maxElems: max(elems, smallBodyElems) + schemaSlackElems,
	}
	lim.maxStr = int(lim.maxBytes)
	return lim
}

// body returns the request body, decompressed, refusing more than
// lim.maxBytes of it after decompression, with a deadline of BodyTimeout
// for reading it all. A body must be application/json. The caller calls
// finish with whether it read the body whole: the deadline is then lifted,
// so that it does not outlive the request on a kept-alive connection;
// otherwise the connection closes after the answer.
func (s *Server) body(w http.ResponseWriter, r *http.Request, lim bodyLimit) (io.Reader, func(ok bool), error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, nil, fmt.Errorf("body of type %q, want application/json: %w", clip(r.Header.Get("Content-Type")), wire.ErrUnsupportedMedia)
	}
	// A slow body holds a connection and a goroutine: it has BodyTimeout.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
	closeZ := func() {}
	finish := func(ok bool) {
		closeZ()
		if ok {
			_ = rc.SetReadDeadline(time.Time{})
		} else {
			w.Header().Set("Connection", "close")
		}
	}
	var body io.Reader = r.Body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzpool.GetReader(r.Body)
		if err != nil {
			finish(false)
			return nil, nil, fmt.Errorf("malformed gzip body: %v: %w", err, wire.ErrBadRequest)
		}
		body, closeZ = zr, func() { gzpool.PutReader(zr) }
	default:
		finish(false)
		return nil, nil, fmt.Errorf("unknown Content-Encoding %q (gzip or none): %w", clip(enc), wire.ErrUnsupportedMedia)
	}
	return &maxReader{r: body, left: lim.maxBytes, max: lim.maxBytes, name: lim.name}, finish, nil
}

// maxReader fails with wire.ErrTooLarge once more than max bytes were read.
type maxReader struct {
	r         io.Reader
	left, max int64
	name      string // the limit
}

func (m *maxReader) Read(p []byte) (int, error) {
	if m.left < 0 {
		return 0, m.tooLarge()
	}
	if int64(len(p)) > m.left+1 {
		p = p[:m.left+1]
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	if m.left < 0 {
		return n, m.tooLarge()
	}
	return n, err
}

func (m *maxReader) tooLarge() error {
	return fmt.Errorf("body larger than %d bytes (%s, after decompression): %w", m.max, m.name, wire.ErrTooLarge)
}

// decode reads a small JSON body into v strictly, under the limit of its
// endpoint (bodyLimitOf): unknown fields and anything but white space
// after the value are refused. The body is read whole and skimmed by the
// bounded reader first (no string, array or object past the limit's
// bounds, no nesting past maxDepth), so that what encoding/json then makes
// of it is bounded too.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	return s.decodeLimited(w, r, v, s.bodyLimitOf(r))
}

// bodyLimitOf returns the limit of r's body by its endpoint: a
// registration's or a digest request's is the server schema's size, any
// other's a few ids'.
func (s *Server) bodyLimitOf(r *http.Request) bodyLimit {
	switch r.Pattern {
	case "POST " + wire.APIPrefix + "/devices", "POST " + wire.APIPrefix + "/digest":
		return s.schemaBody()
	}
	return smallBody
}

// decodeLimited is decode under lim.
func (s *Server) decodeLimited(w http.ResponseWriter, r *http.Request, v any, lim bodyLimit) error {
	body, finish, err := s.body(w, r, lim)
	if err != nil {
		return err
	}
	ok := false
	defer func() { finish(ok) }()
	data, err := io.ReadAll(body)
	if err != nil {
		return badBody(readError{err})
	}
	ok = true // read whole: the connection may stay
	d := &jsonReader{r: bufio.NewReader(bytes.NewReader(data))}
	if err := d.skim(0, lim); err != nil {
		return badBody(err)
	}
	if err := d.end(); err != nil {
		return badBody(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON body: %s: %w", clip(err.Error()), wire.ErrBadRequest)
	}
	return nil
}

// decodeBatch reads a pushed batch (see decodeBatch in decode.go), and
// writes the body, decompressed, to digest when it is not nil.
func (s *Server) decodeBatch(w http.ResponseWriter, r *http.Request, digest io.Writer) (wire.Batch, error) {
	body, finish, err := s.body(w, r, bodyLimit{name: "MaxBodyBytes", maxBytes: s.opts.MaxBodyBytes})
	if err != nil {
		return wire.Batch{}, err
	}
	if digest != nil {
		body = io.TeeReader(body, digest)
	}
	b, err := decodeBatch(body, batchLimits{maxRows: s.opts.MaxBatchRows, maxValue: s.opts.MaxValueBytes})
	finish(err == nil)
	return b, err
}
