package wire_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tethersync/tether/wire"
)

func TestBatchSize(t *testing.T) {
	for _, tt := range []struct{ in, want int }{
		{0, wire.DefaultBatchSize}, {-5, wire.DefaultBatchSize}, {1, 1}, {500, 500},
		{wire.MaxBatchSize + 1, wire.MaxBatchSize},
	} {
		if got := wire.BatchSize(tt.in); got != tt.want {
			t.Errorf("BatchSize(%d)=%d, want %d", tt.in, got, tt.want)
		}
	}
}

// BenchmarkBatchJSON encodes and decodes a batch of 1,000 rows, as the
// client and the server do for every push batch and pull page.
func BenchmarkBatchJSON(b *testing.B) {
	rows := make([]wire.Row, 1000)
	for i := range rows {
		rows[i] = wire.Row{Table: "items", ID: fmt.Sprintf("0190a3b4-0000-7000-8000-%012d", i), Base: 7,
			HLC: "0001700000000.000001.0190a3b4-0000-7000-8000-000000000001",
			Values: map[string]any{"name": "Item number 1 of the catalogue", "category": "hardware",
				"note": nil, "price": 12.5, "quantity": 3, "updated_at": "2026-11-23T08:00:00.000000000Z",
				"tags": `["blue","new"]`}}
	}
	var buf bytes.Buffer
	b.ResetTimer()
	for range b.N {
		buf.Reset()
		if err := json.NewEncoder(&buf).Encode(wire.Batch{Rows: rows}); err != nil {
			b.Fatal(err)
		}
		var out wire.Batch
		dec := json.NewDecoder(&buf)
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil || len(out.Rows) != len(rows) {
			b.Fatalf("decode: %d rows, %v", len(out.Rows), err)
		}
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}
