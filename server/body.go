package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/tethersync/tether/wire"
)

// body returns the request body, decompressed, refusing more than
// MaxBodyBytes of it after decompression, with a deadline of BodyTimeout
// for reading it all. A body must be application/json. The caller calls
// finish with whether it read the body whole: the deadline is then lifted,
// so that it does not outlive the request on a kept-alive connection;
// otherwise the connection closes after the answer.
func (s *Server) body(w http.ResponseWriter, r *http.Request) (io.Reader, func(ok bool), error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, nil, fmt.Errorf("body of type %q, want application/json: %w", r.Header.Get("Content-Type"), wire.ErrUnsupportedMedia)
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
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			finish(false)
			return nil, nil, fmt.Errorf("malformed gzip body: %v: %w", err, wire.ErrBadRequest)
		}
		body, closeZ = zr, func() { zr.Close() }
	default:
		finish(false)
		return nil, nil, fmt.Errorf("unknown Content-Encoding %q (gzip or none): %w", enc, wire.ErrUnsupportedMedia)
	}
	return &maxReader{r: body, left: s.opts.MaxBodyBytes, max: s.opts.MaxBodyBytes}, finish, nil
}

// maxReader fails with wire.ErrTooLarge once more than max bytes were read.
type maxReader struct {
	r         io.Reader
	left, max int64
}

func (m *maxReader) Read(p []byte) (int, error) {
	if m.left < 0 {
		return 0, fmt.Errorf("body larger than %d bytes (MaxBodyBytes, after decompression): %w", m.max, wire.ErrTooLarge)
	}
	if int64(len(p)) > m.left+1 {
		p = p[:m.left+1]
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	if m.left < 0 {
		return n, fmt.Errorf("body larger than %d bytes (MaxBodyBytes, after decompression): %w", m.max, wire.ErrTooLarge)
	}
	return n, err
}

// decode reads a small JSON body strictly: unknown fields and anything but
// white space after the value are refused.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, finish, err := s.body(w, r)
	if err != nil {
		return err
	}
	ok := false
	defer func() { finish(ok) }()
	dec := json.NewDecoder(body)
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, wire.ErrTooLarge) {
			return err
		}
		return fmt.Errorf("malformed JSON body: %v: %w", err, wire.ErrBadRequest)
	}
	rest, err := io.ReadAll(io.MultiReader(dec.Buffered(), body))
	if err != nil {
		return badBody(readError{err})
	}
	if len(bytes.TrimLeft(rest, " \t\r\n")) > 0 {
		return fmt.Errorf("malformed JSON body: data after the value: %w", wire.ErrBadRequest)
	}
	ok = true
	return nil
}

// decodeBatch reads a pushed batch (see decodeBatch in decode.go), and
// writes the body, decompressed, to digest when it is not nil.
func (s *Server) decodeBatch(w http.ResponseWriter, r *http.Request, digest io.Writer) (wire.Batch, error) {
	body, finish, err := s.body(w, r)
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
