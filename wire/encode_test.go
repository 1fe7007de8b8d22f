package wire_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/tethersync/tether/wire"
)

// AppendBatch writes what encoding/json writes, value for value: every
// field, every kind of column value, and strings that need escaping.
func TestAppendBatchMatchesEncodingJSON(t *testing.T) {
	strs := []string{"", "plain", `quote " and backslash \`, "tab\tnewline\nreturn\r", "nul\x00 bell\x07 esc\x1b del\x7f",
		"accents: déjà vu, 東京, emoji 🚀", "invalid \xff\xfe utf-8 \xe2\x82", "separators \u2028 and \u2029", "<html> & 'apos'",
		"trailing space ", "\\u0041 is not an escape here"}
	var rows []wire.Row
	for i, s := range strs {
		rows = append(rows, wire.Row{Table: "items", ID: s, Base: int64(i), HLC: "0001700000000.000001.d",
			Values: map[string]any{"text": s, "n": int64(-i * 1000), "big": int64(math.MaxInt64), "f": 1.0 / float64(i+3),
				"tiny": 1e-300, "whole": 42.0, "yes": i%2 == 0, "none": nil, "json": `{"a":[1,2]}`}})
	}
	rows = append(rows,
		wire.Row{Table: "items", ID: "deleted", Deleted: true, HLC: "h", Values: map[string]any{}, Changed: []string{}},
		wire.Row{Table: "items", ID: "changed", HLC: "h", Values: map[string]any{"text": "x"}, Changed: []string{"text", "n"}},
		wire.Row{Table: "items", ID: "pulled", Version: 9, HLC: "h", Device: "d1", ModifiedBy: "ada", Reason: "restored", Notify: "d2",
			Values: map[string]any{"other": "keys", "than": "before"}},
		wire.Row{Table: "items", ID: "nil values", HLC: "h"},
		wire.Row{Table: "items", ID: "counted", HLC: "h", Values: map[string]any{"n": int64(3)}, Changed: []string{"n"},
			Increments: []wire.Increment{{ID: "0f8fad5b-d9cb-469f-a165-70867728950e", Column: "n", Delta: -2}, {ID: "x", Column: "n", Delta: 5}}},
	)
	got, err := wire.AppendBatch(nil, rows)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(wire.Batch{Rows: rows})
	if err != nil {
		t.Fatal(err)
	}
	decode := func(b []byte) any {
		t.Helper()
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		return v
	}
	if g, w := decode(got), decode(want); !reflect.DeepEqual(g, w) {
		t.Errorf("AppendBatch decodes to\n%v\nencoding/json's to\n%v", g, w)
	}
	if !json.Valid(bytes.TrimSpace(got)) {
		t.Error("AppendBatch wrote invalid JSON")
	}
	if _, err := wire.AppendBatch(nil, []wire.Row{{Table: "t", ID: "x", Values: map[string]any{"bad": math.NaN()}}}); err == nil {
		t.Error("a NaN value encoded without error")
	}
}

// BenchmarkAppendBatch encodes a batch of 1,000 rows as the client does.
func BenchmarkAppendBatch(b *testing.B) {
	rows := benchRows()
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = wire.AppendBatch(buf[:0], rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}

func benchRows() []wire.Row {
	rows := make([]wire.Row, 1000)
	for i := range rows {
		rows[i] = wire.Row{Table: "items", ID: fmt.Sprintf("0190a3b4-0000-7000-8000-%012d", i), Base: 7,
			HLC: "0001700000000.000001.0190a3b4-0000-7000-8000-000000000001",
			Values: map[string]any{"name": "Item number 1 of the catalogue", "category": "hardware",
				"note": nil, "price": 12.5, "quantity": int64(3), "updated_at": "2026-11-23T08:00:00.000000000Z",
				"tags": `["blue","new"]`}}
	}
	return rows
}

// AppendChanges writes what encoding/json writes, value for value, and
// floats digit for digit.
func TestAppendChangesMatchesEncodingJSON(t *testing.T) {
	floats := []float64{0, -0.0, 1, -1.5, 0.1, 1.0 / 3, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 123456789.125, -2.5e-300, math.MaxFloat64, math.SmallestNonzeroFloat64}
	var rows []wire.Row
	for i, f := range floats {
		rows = append(rows, wire.Row{Table: "items", ID: fmt.Sprint(i), Version: int64(i + 1), HLC: "h", Device: "d", ModifiedBy: "ada <&>",
			Values: map[string]any{"f": f, "s": "<b>&amp;</b>", "blob": []byte{0, 1, 2, 250}, "n": int64(i), "nil": nil}})
	}
	rows = append(rows, wire.Row{Table: "items", ID: "gone", Version: 9, Evict: true},
		wire.Row{Table: "items", ID: "undone", Version: 9, Deleted: true, HLC: "h", Reason: "deleted with its parent", Notify: "d2", Values: map[string]any{}})
	for _, c := range []wire.Changes{
		{Changes: rows, Cursor: "9.1.gone", More: true, Wait: true, Partial: true},
		{Changes: []wire.Row{}, Cursor: "9"},
		{Cursor: "9"},
	} {
		got, err := wire.AppendChanges(nil, &c)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(c); err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("AppendChanges wrote invalid JSON: %v\n%s", err, got)
		}
		if err := json.Unmarshal(want.Bytes(), &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("AppendChanges decodes to\n%v\nencoding/json's to\n%v", g, w)
		}
		for i, f := range floats {
			if i < len(c.Changes) {
				js, _ := json.Marshal(f)
				if !bytes.Contains(got, append([]byte(`"f":`), js...)) {
					t.Errorf("float %v: encoding/json writes %s, AppendChanges wrote otherwise", f, js)
				}
			}
		}
	}
	bad := wire.Changes{Changes: []wire.Row{{Table: "t", ID: "x", Values: map[string]any{"bad": math.Inf(1)}}}}
	if _, err := wire.AppendChanges(nil, &bad); err == nil {
		t.Error("an infinite value encoded without error")
	}
}

// BenchmarkAppendChanges encodes a page of 1,000 rows as the server does.
func BenchmarkAppendChanges(b *testing.B) {
	c := wire.Changes{Changes: benchRows(), Cursor: "12.1.x", More: true}
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = wire.AppendChanges(buf[:0], &c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(c.Changes))/b.Elapsed().Seconds(), "rows/s")
}
