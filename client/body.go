package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/tethersync/tether/internal/gzpool"
	"github.com/tethersync/tether/wire"
)

// stream encodes v as JSON, gzipped unless disabled, into the returned
// body while the request sends it, so that encoding, the network and the
// server's decoding overlap. done receives the encoder's error, if any,
// once the body is written or closed.
func (c *Client) stream(v any) (body *io.PipeReader, done <-chan error) {
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		cw := &countingWriter{w: pw}
		var w io.Writer = cw
		var zw *gzip.Writer
		if c.gzip {
			zw = gzpool.Get(cw)
			w = zw
		}
		var err error
		if b, ok := v.(wire.Batch); ok { // the bulk of a push: encoded without reflection
			buf := batchBufs.Get().(*[]byte)
			if *buf, err = wire.AppendBatch((*buf)[:0], b.Rows); err == nil {
				_, err = w.Write(*buf)
			}
			if cap(*buf) <= 16<<20 {
				batchBufs.Put(buf)
			}
		} else {
			err = json.NewEncoder(w).Encode(v)
		}
		if err != nil && !errors.Is(err, io.ErrClosedPipe) {
			err = fmt.Errorf("encode request: %w", err)
		}
		if zw != nil {
			if cerr := zw.Close(); err == nil && cerr != nil && !errors.Is(cerr, io.ErrClosedPipe) {
				err = fmt.Errorf("compress request: %w", cerr)
			}
			gzpool.Put(zw)
		}
		c.sent.Add(cw.n)
		pw.CloseWithError(err)
		errc <- err
	}()
	return pr, errc
}

// decode reads a JSON answer into out, numbers among row values as
// json.Number. A pull page, the bulk of a pull, is read without
// reflection (wire.ReadChanges).
func decode(body io.Reader, out any) error {
	switch ch := out.(type) {
	case *wire.Changes:
		var err error
		*ch, err = wire.ReadChanges(body)
		return err
	case *headed:
		var err error
		ch.page, err = wire.ReadChangesAside(body, ch.head)
		return err
	}
	dec := json.NewDecoder(body)
	dec.UseNumber()
	return dec.Decode(out)
}

// headed is the answer of ChangesHead: a pull page, and the function
// told where it ends before its rows are read.
type headed struct {
	page wire.Changes
	head func(wire.Changes)
}

// batchBufs holds the buffers pushed batches are encoded into.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
