// Package gzpool reuses gzip writers, which are large to allocate, for the
// client's request bodies and the server's answers. They compress at
// BestSpeed: on tether's JSON about as well as the default level, at a
// fraction of the cost.
package gzpool

import (
	"compress/gzip"
	"io"
	"sync"
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
