package gzpool

import (
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
)

var pool = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

// Get returns a gzip writer writing to w. Close it, then Put it back.
func Get(w io.Writer) *gzip.Writer {
	zw := pool.Get().(*gzip.Writer)
	zw.Reset(w)
	return zw
}

// Put returns a closed writer to the pool.
func Put(zw *gzip.Writer) { pool.Put(zw) }
