package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// fuzzSchema has a column of every kind.
var fuzzSchema = entity.Schema{Tables: []entity.Table{{Name: "items", Priority: 1, Columns: []entity.Column{
	{Name: "id", Kind: entity.KindText},
	{Name: "name", Kind: entity.KindText},
	{Name: "note", Kind: entity.KindText, Nullable: true},
	{Name: "count", Kind: entity.KindInteger},
	{Name: "score", Kind: entity.KindReal},
	{Name: "active", Kind: entity.KindBool},
	{Name: "at", Kind: entity.KindTime},
	{Name: "data", Kind: entity.KindBlob, Nullable: true},
	{Name: "tags", Kind: entity.KindJSON},
}}}}

// fuzzStamping accepts the stamps of device "d" up to 2100.
var fuzzStamping = stamping{device: "d", now: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), skew: time.Minute}

// FuzzPushBatch feeds arbitrary bodies, plain or gzipped, to the decoding
// and validation of a pushed batch. Anything refused must be refused as bad
// input; anything accepted must be canonical: encoding the validated rows
// and validating them again gives the same rows.
func FuzzPushBatch(f *testing.F) {
	f.Add([]byte(`{"rows":[{"table":"items","id":"a","hlc":"0000000000001.000000.d","values":{"name":"x","count":1,"score":1.5,"active":true,"at":"2026-11-23T08:00:00Z","data":"AAE=","tags":"[1]"}}]}`), false)
	f.Add([]byte(`{"rows":[{"table":"items","id":"a","hlc":"0000000000001.000000.d","deleted":true,"values":{}}]}`), true)
	f.Add([]byte(`{"rows":[]}`), false)
	f.Add([]byte(`{"rows":[{"table":"users; DROP TABLE items","id":"a"}]}`), false)
	f.Add([]byte(`{"rows":[{"table":"items","id":"a\u0000","hlc":"x"}]}`), false)
	s := &Server{opts: Options{MaxBodyBytes: 1 << 20, MaxBatchRows: wire.MaxBatchSize, MaxValueBytes: 64 << 10, BodyTimeout: time.Minute}}
	f.Fuzz(func(t *testing.T, body []byte, gz bool) {
		plain := len(body)
		if gz {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(body)
			zw.Close()
			body = buf.Bytes()
		}
		var b wire.Batch
		var err error
		// Allocation is bounded by what the body holds, never by what it
		// declares: a few times the decompressed bytes read (at most
		// MaxBodyBytes), plus the buffers of gzip and the reader.
		alloc := allocated(func() { b, err = s.decodeBatch(httptest.NewRecorder(), batchRequest(body, gz), nil) })
		if limit := uint64(16*min(plain, int(s.opts.MaxBodyBytes)) + 1<<20); alloc > limit {
			t.Fatalf("decoding %d bytes (%d decompressed) allocated %d bytes, more than %d", len(body), plain, alloc, limit)
		}
		if err != nil {
			if !errors.Is(err, wire.ErrBadRequest) && !errors.Is(err, wire.ErrTooLarge) {
				t.Fatalf("decode error is not bad input: %v", err)
			}
			return
		}
		if err := validateRows(fuzzSchema, b.Rows, fuzzStamping); err != nil {
			if !errors.Is(err, wire.ErrBadRequest) && !errors.Is(err, wire.ErrTooLarge) {
				t.Fatalf("validation error is not bad input: %v", err)
			}
			return
		}
		again, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encode validated rows: %v", err)
		}
		b2, err := s.decodeBatch(httptest.NewRecorder(), batchRequest(again, false), nil)
		if err != nil {
			t.Fatalf("validated rows do not decode again: %v\n%s", err, again)
		}
		if err := validateRows(fuzzSchema, b2.Rows, fuzzStamping); err != nil {
			t.Fatalf("validated rows do not validate again: %v\n%s", err, again)
		}
		for i := range b.Rows {
			// Restamped is the server's note that it replaced a stamp too
			// far ahead; it is not sent, and the replaced stamp is not
			// ahead any more.
			b.Rows[i].Restamped = false
		}
		if !reflect.DeepEqual(b.Rows, b2.Rows) {
			t.Fatalf("validation is not canonical:\n%+v\n%+v", b.Rows, b2.Rows)
		}
	})
}

// batchRequest is a pushed batch with body, gzipped when gz.
func batchRequest(body []byte, gz bool) *http.Request {
	r := httptest.NewRequest("PUT", "/v1/sessions/s/batches/0", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if gz {
		r.Header.Set("Content-Encoding", "gzip")
	}
	return r
}

// allocated returns the bytes the process allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzParseCursor: any text parses or is refused as bad input, and a
// parsed cursor survives a round trip through its text form.
func FuzzParseCursor(f *testing.F) {
	f.Add("")
	f.Add(Cursor{Version: 42, Table: 1, ID: "0190a3b4-0000-7000-8000-000000000001"}.String())
	f.Add(Cursor{Version: 7, Table: 0, ID: "id:with:colons"}.String())
	f.Add("not base64!")
	f.Add("MTotMTowOng") // "1:-1:0:x"
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, wire.ErrBadRequest) {
				t.Fatalf("ParseCursor(%q): %v, want ErrBadRequest", s, err)
			}
			return
		}
		if c.Version < 0 || c.Table < 0 {
			t.Fatalf("ParseCursor(%q) = %+v: negative position", s, c)
		}
		back, err := ParseCursor(c.String())
		if err != nil || back != c {
			t.Fatalf("round trip of %+v: %+v, %v", c, back, err)
		}
	})
}
