package gzpool

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// A writer from the pool compresses into the writer it was got for, also
// when it is reused.
func TestGetPut(t *testing.T) {
	for i := range 3 {
		var buf bytes.Buffer
		zw := Get(&buf)
		want := bytes.Repeat([]byte("tether "), 100+i)
		zw.Write(want)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		Put(zw)
		zr, err := gzip.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("round %d: %d bytes back (%v), want %d", i, len(got), err, len(want))
		}
	}
}
