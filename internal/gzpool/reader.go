package gzpool

import (
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// readers holds gzip readers: each holds a 32 KB window that a small
// request or answer would otherwise allocate anew.
var readers sync.Pool

// GetReader returns a gzip reader of r, reading its header as
// gzip.NewReader does, and its error for a stream that is not gzip. Give
// the reader back with PutReader once done with it (not after an error:
// there is no reader then).
func GetReader(r io.Reader) (*gzip.Reader, error) {
	if zr, ok := readers.Get().(*gzip.Reader); ok {
		if err := zr.Reset(r); err != nil {
			readers.Put(zr)
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(r)
}

// PutReader closes zr and returns it to the pool. zr must not be used
// afterwards.
func PutReader(zr *gzip.Reader) {
	zr.Close()
	readers.Put(zr)
}
