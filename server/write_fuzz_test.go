package server

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// schemaStore is a Store that only tells its schema: what writeBatches
// asks of one.
type schemaStore struct {
	Store
	schema entity.Schema
}

func (s schemaStore) Schema() entity.Schema { return s.schema }

// FuzzWriteRequest feeds arbitrary bodies to the decoding of a write and
// the checks of its rows. Anything refused must be refused as bad input;
// the caller's rows are left as decoded; the rows of the batches are
// canonical: encoded and checked again, they are the same rows.
func FuzzWriteRequest(f *testing.F) {
	f.Add([]byte(`{"request":"r1","rows":[{"table":"items","id":"a","values":{"name":"x","count":1,"score":1.5,"active":true,"at":"2026-11-23T08:00:00Z","data":"AAE=","tags":"[1]"}}]}`))
	f.Add([]byte(`{"request":"r1","rows":[{"table":"items","id":"a","hlc":"0000000000001.000000.other","deleted":true,"values":{}}]}`))
	f.Add([]byte(`{"request":"r1","rows":[{"table":"items","id":"a"},{"table":"items","id":"a"}]}`))
	f.Add([]byte(`{"rows":null,"request":""}`))
	s := &Server{store: schemaStore{schema: fuzzSchema}, opts: Options{MaxBodyBytes: 1 << 20, MaxBatchRows: 2, MaxValueBytes: 64 << 10,
		BodyTimeout: time.Minute, Now: func() time.Time { return fuzzStamping.now }, MaxClockSkew: time.Minute, Limits: Limits{}.WithDefaults()}}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := s.decodeWrite(httptest.NewRecorder(), batchRequest(body, false))
		if err != nil {
			if !errors.Is(err, wire.ErrBadRequest) && !errors.Is(err, wire.ErrTooLarge) {
				t.Fatalf("decode error is not bad input: %v", err)
			}
			return
		}
		decoded, _ := json.Marshal(req.Rows)
		batches, err := s.writeBatches(req.Rows)
		if after, _ := json.Marshal(req.Rows); string(after) != string(decoded) {
			t.Fatalf("writeBatches changed the caller's rows:\n%s\n%s", decoded, after)
		}
		if err != nil {
			if !errors.Is(err, wire.ErrBadRequest) && !errors.Is(err, wire.ErrTooLarge) {
				t.Fatalf("check error is not bad input: %v", err)
			}
			return
		}
		for _, b := range batches {
			if len(b) == 0 || len(b) > s.opts.MaxBatchRows {
				t.Fatalf("a batch of %d rows", len(b))
			}
			for i := range b {
				b[i].Restamped = false // the server's note, not sent
			}
			again, err := json.Marshal(wire.Batch{Rows: b})
			if err != nil {
				t.Fatalf("encode checked rows: %v", err)
			}
			b2, err := s.decodeBatch(httptest.NewRecorder(), batchRequest(again, false), nil)
			if err != nil {
				t.Fatalf("checked rows do not decode again: %v\n%s", err, again)
			}
			st := stamping{device: WriteDevice, now: fuzzStamping.now, skew: time.Minute}
			if err := validateRows(fuzzSchema, b2.Rows, st); err != nil {
				t.Fatalf("checked rows are not pushed rows of the server's device: %v\n%s", err, again)
			}
			if !reflect.DeepEqual(b, b2.Rows) {
				t.Fatalf("checks are not canonical:\n%+v\n%+v", b, b2.Rows)
			}
		}
	})
}

// The server's clock for writes goes forward, also within a millisecond
// and past the counter's end, and starts over from the time given when it
// is further ahead of it than the skew.
func TestStampClock(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	var c stampClock
	stamp := func(now time.Time) (int64, int64) {
		ms, counter, dev, err := wire.ParseStamp(c.stamp(now, time.Minute))
		if err != nil || dev != WriteDevice {
			t.Fatalf("stamp %v of device %q, want a stamp of %s", err, dev, WriteDevice)
		}
		return ms, counter
	}
	for i, want := range [][2]int64{{at.UnixMilli(), 0}, {at.UnixMilli(), 1}, {at.UnixMilli(), 2}} {
		if ms, n := stamp(at); ms != want[0] || n != want[1] {
			t.Errorf("stamp %d at one time: %d.%d, want %d.%d", i, ms, n, want[0], want[1])
		}
	}
	if ms, n := stamp(at.Add(-time.Second)); ms != at.UnixMilli() || n != 3 {
		t.Errorf("stamp at a time moved back a second: %d.%d, want %d.3", ms, n, at.UnixMilli())
	}
	c.counter = wire.MaxStampCounter
	if ms, n := stamp(at); ms != at.UnixMilli()+1 || n != 0 {
		t.Errorf("stamp past the counter's end: %d.%d, want %d.0", ms, n, at.UnixMilli()+1)
	}
	if ms, n := stamp(at.Add(-time.Hour)); ms != at.Add(-time.Hour).UnixMilli() || n != 0 {
		t.Errorf("stamp at a time moved back an hour: %d.%d, want %d.0", ms, n, at.Add(-time.Hour).UnixMilli())
	}
	if ms, n := stamp(at); ms != at.UnixMilli() || n != 0 {
		t.Errorf("stamp at a later time: %d.%d, want %d.0", ms, n, at.UnixMilli())
	}
}
