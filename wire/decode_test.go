package wire_test

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/wire"
)

// stdChanges decodes a page as the client did before ReadChanges.
func stdChanges(t testing.TB, b []byte) wire.Changes {
	t.Helper()
	var c wire.Changes
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return c
}

// ReadChanges reads what encoding/json with UseNumber reads: every field
// of a row, every kind of value, escapes, names in another case, unknown
// members, nulls.
func TestReadChangesMatchesEncodingJSON(t *testing.T) {
	rows := []wire.Row{
		{Table: "items", ID: "a", Version: 3, HLC: "0001700000000.000001.d", Device: "d1", ModifiedBy: "ada",
			Values: map[string]any{"text": "déjà vu, 東京 🚀, \"quoted\" \\ \n\t\u2028", "n": int64(-42), "f": 0.125, "big": int64(1 << 62),
				"yes": true, "no": false, "none": nil, "json": `{"a":[1,2]}`}},
		{Table: "items", ID: "deleted", Version: 4, Deleted: true, HLC: "h", Values: map[string]any{}},
		{Table: "items", ID: "restored", Version: 5, HLC: "h", Reason: "restored", Notify: "d2", Values: map[string]any{"text": "x"}},
		{Table: "items", ID: "gone", Version: 6, Evict: true},
		{Table: "items", ID: "pushed", Base: 2, HLC: "h", Changed: []string{"text"}, Values: map[string]any{"text": "y"},
			Increments: []wire.Increment{{ID: "0f8fad5b-d9cb-469f-a165-70867728950e", Column: "n", Delta: -2}}},
	}
	page, err := json.Marshal(wire.Changes{Changes: rows, Cursor: "5.1.x", More: true, Wait: true, Partial: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, body string }{
		{"encoding/json", string(page)},
		{"empty", `{"changes":[],"cursor":"c","more":false}`},
		{"null rows", `{"changes":null,"cursor":"c"}`},
		{"no rows", `{"cursor":"c","more":true}`},
		{"unknown members", `{"future":{"a":[1,{"b":null}]},"changes":[{"table":"t","id":"x","hlc":"h","extra":[1,2],"values":{"v":1}}],"cursor":"c"}`},
		{"other case", `{"Changes":[{"TABLE":"t","Id":"x","Version":2,"values":{"Name":"kept as sent"}}],"Cursor":"c","MORE":true}`},
		{"nulls", `{"changes":[{"table":null,"id":"x","version":null,"deleted":null,"values":null,"changed":null}],"cursor":null}`},
		{"nested values", `{"changes":[{"table":"t","id":"x","values":{"o":{"k":[1.5,"s",null]},"a":[true]}}]}`},
		{"escaped names", `{"chang\u0065s":[{"t\u0061ble":"t","id":"\u00e9\ud83d\ude80","values":{"na\u006de":"v\u0000"}}]}`},
		{"numbers", `{"changes":[{"table":"t","id":"x","version":9007199254740993,"values":{"e":1e300,"neg":-0.0,"i":12345678901234567890}}]}`},
		{"trailing data", `{"changes":[],"cursor":"c"} {"more":true}`},
		{"duplicate members", `{"cursor":"a","cursor":"b","changes":[{"id":"x","id":"y","values":{"v":1,"v":2}}]}`},
		// encoding/json folds names by Unicode simple folding: U+017F
		// (long s) matches s, U+212A (Kelvin sign) k; U+0130 (I with a
		// dot) matches nothing.
		{"folded names", `{"change\u017f":[{"table":"t","\u0130d":"x","ba\u017fe":3,"value\u017f":{"v":1}}],"cur\u017for":"c","\u212Aey":1}`},
		{"values then null", `{"changes":[{"table":"t","id":"x","values":{"v":1},"values":null}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := wire.ReadChanges(strings.NewReader(tc.body))
			if err != nil {
				t.Fatalf("ReadChanges: %v", err)
			}
			checkRaw(t, &got)
			if want := stdChanges(t, []byte(tc.body)); !reflect.DeepEqual(got, want) {
				t.Errorf("ReadChanges =\n%#v\nencoding/json:\n%#v", got, want)
			}
		})
	}
}

// ReadChanges refuses what encoding/json refuses: a page cut short, a
// field of the wrong kind.
func TestReadChangesRefuses(t *testing.T) {
	for _, body := range []string{
		``,
		`{"changes":[{"table":"t","id":"x"}`,
		`{"changes":[{"table":"t","id":"x","values":{"v":}}]}`,
		`{"changes":{}}`,
		`{"more":"yes"}`,
		`{"cursor":1}`,
		`{"changes":[{"table":1}]}`,
		`{"changes":[{"version":1.5}]}`,
		`{"changes":[{"version":"1"}]}`,
		`{"changes":[{"deleted":1}]}`,
		`{"changes":[{"values":[1]}]}`,
		`{"changes":[{"changed":"a"}]}`,
		`[]`,
	} {
		if _, err := wire.ReadChanges(strings.NewReader(body)); err == nil {
			t.Errorf("ReadChanges(%q) succeeded, want error", body)
		}
		var c wire.Changes
		if err := json.Unmarshal([]byte(body), &c); err == nil {
			t.Errorf("encoding/json accepted %q: the case tests nothing", body)
		}
	}
}

// ReadBatch reads back what AppendBatch writes.
func TestReadBatchRoundTrip(t *testing.T) {
	rows := benchRows()
	rows = append(rows, wire.Row{Table: "items", ID: "gone", Version: 6, Evict: true},
		wire.Row{Table: "items", ID: "r", Version: 2, HLC: "h", Reason: "restored", Notify: "d", Deleted: true, Values: map[string]any{}})
	b, err := wire.AppendBatch(nil, rows)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.ReadBatch(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var want wire.Batch
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadBatch =\n%v\nencoding/json:\n%v", got.Rows[len(rows)-2:], want.Rows[len(rows)-2:])
	}
	if !got.Rows[len(rows)-2].Evict {
		t.Error("an evicted row lost its mark on the way through AppendBatch")
	}
}

func benchPage(b *testing.B) []byte {
	rows := benchRows()
	for i := range rows {
		rows[i].Version, rows[i].Base, rows[i].ModifiedBy = 12, 0, "ada"
	}
	page, err := json.Marshal(wire.Changes{Changes: rows, Cursor: "12.1.x", More: true})
	if err != nil {
		b.Fatal(err)
	}
	return page
}

// BenchmarkReadChanges decodes a page of 1,000 rows as the client does.
func BenchmarkReadChanges(b *testing.B) {
	page := benchPage(b)
	for b.Loop() {
		if _, err := wire.ReadChanges(bytes.NewReader(page)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkReadChangesAside reads a page of 1,000 rows to set aside (one
// of a session larger than a page) as the pull engine does: its text kept,
// its values passed over.
func BenchmarkReadChangesAside(b *testing.B) {
	rows := benchRows()
	for i := range rows {
		rows[i].Version, rows[i].Base, rows[i].ModifiedBy = 12, 0, "ada"
	}
	page, err := wire.AppendChanges(nil, &wire.Changes{Changes: rows, Cursor: "12.1.x", More: true, Partial: true})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c, err := wire.ReadChangesAside(bytes.NewReader(page), nil)
		if err != nil || c.Raw == nil {
			b.Fatal(err, "or no Raw")
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkDecodeChangesStd decodes the page of BenchmarkReadChanges with
// encoding/json, as the client did before.
func BenchmarkDecodeChangesStd(b *testing.B) {
	page := benchPage(b)
	for b.Loop() {
		stdChanges(b, page)
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "rows/s")
}

// RowReader reads the rows ReadBatch reads, handing over their values one
// by one, with the fields before them already read.
func TestRowReader(t *testing.T) {
	rows := benchRows()[:3]
	rows = append(rows, wire.Row{Table: "items", ID: "gone", Version: 6, Evict: true},
		wire.Row{Table: "items", ID: "r", Version: 2, HLC: "h", Reason: "restored", Notify: "d", Values: map[string]any{"name": "x"}})
	b, err := wire.AppendBatch(nil, rows)
	if err != nil {
		t.Fatal(err)
	}
	want, err := wire.ReadBatch(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rr, err := wire.NewRowReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var got []wire.Row
	for {
		var r wire.Row
		vals := map[string]any{}
		err := rr.Next(&r, func(r *wire.Row, name string, v any) error {
			if r.Table == "" || r.ID == "" || r.HLC == "" || r.Notify == "" && r.ID == "r" {
				t.Errorf("value %s of row %q: fields before the values not read yet: %+v", name, r.ID, r)
			}
			vals[name] = v
			return nil
		})
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(vals) > 0 || r.ID != "gone" {
			r.Values = vals
		}
		got = append(got, r)
	}
	if !reflect.DeepEqual(got, want.Rows) {
		t.Errorf("RowReader read\n%v\nReadBatch\n%v", got, want.Rows)
	}
	for _, body := range []string{`{"rows":null}`, `{"rows":[]}`} {
		rr, err := wire.NewRowReader(strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if err := rr.Next(&wire.Row{}, nil); err != io.EOF {
			t.Errorf("%s: Next=%v, want io.EOF", body, err)
		}
	}
	if _, err := wire.NewRowReader(strings.NewReader(`{"more":true,"rows":[]}`)); err == nil {
		t.Error("NewRowReader read a batch whose rows do not come first")
	}
}

// FuzzReadChanges checks that ReadChanges never panics, accepts nothing
// encoding/json refuses and, on what both accept, reads what encoding/json
// reads. Inputs with bytes past ASCII are only read: encoding/json accepts
// invalid UTF-8, which ReadChanges refuses (as it refuses an escaped lone
// surrogate).
func FuzzReadChanges(f *testing.F) {
	for _, s := range []string{
		`{"changes":[{"table":"t","id":"x","version":2,"hlc":"h","values":{"a":1,"b":"s","c":null,"d":true}}],"cursor":"c","more":true}`,
		`{"changes":[{"table":"t","id":"x","evict":true}],"partial":true,"wait":true}`,
		`{"Changes":null,"CURSOR":"c"}`,
		`{"changes":[{"values":{"o":{"k":[1,2]}},"changed":["a"],"increments":[{"id":"i","column":"c","delta":1}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := wire.ReadChanges(bytes.NewReader(b))
		if err == nil {
			checkAside(t, b, got)
		}
		for _, c := range b {
			if c >= 0x80 {
				return
			}
		}
		if err == nil {
			checkRaw(t, &got)
		}
		var want wire.Changes
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		werr := dec.Decode(&want)
		if err == nil && werr != nil {
			t.Errorf("ReadChanges(%s) accepts what encoding/json refuses: %v", b, werr)
		}
		if err == nil && werr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("ReadChanges(%s) =\n%#v\nencoding/json:\n%#v", b, got, want)
		}
	})
}

// readRaw reads raw, a page's Changes.Raw, as a device reads a page it set
// aside: with a RowReader, the values put back into a map.
func readRaw(t testing.TB, raw []byte) []wire.Row {
	t.Helper()
	rr, err := wire.NewRowReader(io.MultiReader(strings.NewReader(`{"rows":`), bytes.NewReader(raw), strings.NewReader("}")))
	if err != nil {
		t.Fatalf("NewRowReader(%s): %v", raw, err)
	}
	var out []wire.Row
	for {
		var r wire.Row
		vals := map[string]any{}
		var seen []wire.Row // the row as read when each value came
		err := rr.Next(&r, func(at *wire.Row, name string, v any) error {
			vals[name] = v
			seen = append(seen, *at)
			return nil
		})
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("RowReader(%s): %v", raw, err)
		}
		for _, at := range seen { // what a device's reader looks at as values come
			if at.Table != r.Table || at.ID != r.ID || at.Reason != r.Reason || at.Notify != r.Notify || at.Deleted != r.Deleted {
				t.Errorf("RowReader(%s): a value came before its row's fields: %+v, then %+v", raw, at, r)
			}
		}
		if len(vals) > 0 {
			r.Values = vals
		}
		out = append(out, r)
	}
}

// checkRaw checks that c.Raw, when set, holds c.Changes as a RowReader
// reads them, and clears it.
func checkRaw(t testing.TB, c *wire.Changes) {
	t.Helper()
	if c.Raw == nil {
		return
	}
	got := readRaw(t, c.Raw)
	var want []wire.Row
	for _, r := range c.Changes {
		if len(r.Values) == 0 {
			r.Values = nil // a RowReader hands over no values: none, or an empty object
		}
		want = append(want, r)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Raw %s read by a RowReader =\n%#v\nReadChanges:\n%#v", c.Raw, got, want)
	}
	c.Raw = nil
}

// checkAside checks that ReadChangesAside reads page b as ReadChanges did
// (whole), but for the values of a page to set aside that it keeps the
// text of.
func checkAside(t testing.TB, b []byte, whole wire.Changes) {
	t.Helper()
	got, err := wire.ReadChangesAside(bytes.NewReader(b), nil)
	if err != nil {
		t.Fatalf("ReadChangesAside(%s): %v; ReadChanges read it", b, err)
	}
	if reflect.DeepEqual(got, whole) {
		return
	}
	if whole.Raw == nil || !whole.More || !whole.Partial || !bytes.Equal(got.Raw, whole.Raw) {
		t.Fatalf("ReadChangesAside(%s) =\n%#v\nReadChanges:\n%#v", b, got, whole)
	}
	want := whole
	want.Changes = nil
	for _, r := range whole.Changes {
		r.Values = nil
		want.Changes = append(want.Changes, r)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadChangesAside(%s) =\n%#v\nwant the rows of ReadChanges without values:\n%#v", b, got, want)
	}
}

// ReadChangesAside does not decode the values of the rows of a page to
// set aside, which it keeps as text; every other page comes whole, and
// values that are not an object are refused.
func TestReadChangesAside(t *testing.T) {
	page, err := wire.AppendChanges(nil, &wire.Changes{Changes: benchRows(), Cursor: "c", More: true, Partial: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.ReadChangesAside(bytes.NewReader(page), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Raw == nil || len(got.Changes) != len(benchRows()) {
		t.Fatalf("page to set aside: Raw %d bytes, %d rows; want its text and its %d rows", len(got.Raw), len(got.Changes), len(benchRows()))
	}
	for i, r := range got.Changes {
		if r.Values != nil || r.Table == "" || r.ID == "" {
			t.Fatalf("row %d: %+v, want its table and id and no values", i, r)
		}
	}
	whole, err := wire.ReadChanges(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	checkAside(t, page, whole)
	var told wire.Changes
	if _, err := wire.ReadChangesAside(bytes.NewReader(page), func(h wire.Changes) { told = h }); err != nil || told.Cursor != "c" || !told.Partial {
		t.Errorf("head told %+v, %v; want the page's", told, err)
	}
	if rows := readRaw(t, got.Raw); !reflect.DeepEqual(rows, whole.Changes) {
		t.Errorf("Raw read by a RowReader differs from the page read whole")
	}
	for _, body := range []string{
		`{"more":true,"partial":true,"changes":[{"table":"t","id":"x","values":{"v":1},"table":"u"}]}`,  // read late: whole
		`{"more":false,"partial":true,"changes":[{"table":"t","id":"x","values":{"v":1}}]}`,             // applied, not set aside
		`{"partial":true,"changes":[{"table":"t","id":"x","values":{"v":1}}],"more":true}`,              // more told too late
		`{"more":true,"partial":true,"changes":[{"table":"t","id":"x","values":{"v":1}}],"more":false}`, // and then otherwise: whole
		`{"more":true,"partial":true,"changes":[{"table":"t","id":"x","values":{"v":1}}],"partial":false}`,
		`{"partial":true,"more":true,"changes":[{"table":"t","id":"x","values":{"v":[1,{"a":null}]}}]}`,
	} {
		whole, err := wire.ReadChanges(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		checkAside(t, []byte(body), whole)
	}
	if _, err := wire.ReadChangesAside(strings.NewReader(`{"more":true,"partial":true,"changes":[{"table":"t","id":"x","values":[1]}]}`), nil); err == nil {
		t.Error("values that are an array: read, want an error")
	}
}

// A partial page as the server writes it comes with its rows' text, which
// a RowReader reads as ReadChanges did; a page whose rows have members
// after their values that a RowReader would read too late does not, nor
// a page not to set aside, or one that says so only after its rows.
func TestReadChangesRaw(t *testing.T) {
	rows := benchRows()
	rows = append(rows, wire.Row{Table: "items", ID: "gone", Version: 6, Evict: true},
		wire.Row{Table: "items", ID: "r", Version: 2, HLC: "h", Reason: "restored", Notify: "d", Deleted: true, Values: map[string]any{"text": "x"}},
		wire.Row{Table: "items", ID: "c", Version: 2, HLC: "h", Changed: []string{"text"}, Values: map[string]any{"text": "y"},
			Increments: []wire.Increment{{ID: "i", Column: "n", Delta: 1}}})
	page, err := wire.AppendChanges(nil, &wire.Changes{Changes: rows, Cursor: "c", More: true, Partial: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.ReadChanges(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if got.Raw == nil {
		t.Fatal("no Raw for a page AppendChanges wrote")
	}
	if !bytes.HasPrefix(got.Raw, []byte(`[{"table":`)) || !bytes.HasSuffix(got.Raw, []byte(`}]`)) {
		t.Errorf("Raw is not the rows' array: %.40s...", got.Raw)
	}
	checkRaw(t, &got)
	for _, body := range []string{
		`{"partial":true,"changes":[{"table":"t","id":"x","values":{"v":1},"reason":"restored","notify":"d"}]}`, // encoding/json's order
		`{"partial":true,"changes":[{"id":"x","values":{"v":1},"table":"t"}]}`,
		`{"partial":true,"changes":[{"table":"t","id":"x","values":{"v":1},"values":null}]}`,
		`{"partial":true,"changes":[{"table":"t","id":"x","values":{"v":1},"future":1}]}`,
		`{"partial":true,"changes":null}`,
		`{"partial":false,"changes":[{"table":"t","id":"x","values":{"v":1}}]}`, // not to set aside
		`{"changes":[{"table":"t","id":"x","values":{"v":1}}],"partial":true}`,  // told too late
	} {
		got, err := wire.ReadChanges(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if got.Raw != nil {
			t.Errorf("ReadChanges(%s): Raw set, want nil", body)
		}
	}
}

// ReadChangesHead tells where a page ends before it reads the page's
// rows: the rows of this page are written only once the head was told.
func TestReadChangesHead(t *testing.T) {
	page, err := wire.AppendChanges(nil, &wire.Changes{Changes: benchRows(), Cursor: "12.1.x", More: true, Partial: true})
	if err != nil {
		t.Fatal(err)
	}
	cut := bytes.Index(page, []byte(`"changes":[`)) + len(`"changes":[`)
	pr, pw := io.Pipe()
	told := make(chan wire.Changes, 1)
	var late atomic.Bool
	go func() {
		pw.Write(page[:cut])
		select { // the rest only once the head was told
		case <-told:
		case <-time.After(10 * time.Second):
			late.Store(true)
		}
		pw.Write(page[cut:])
		pw.Close()
	}()
	var heads []wire.Changes
	got, err := wire.ReadChangesHead(pr, func(h wire.Changes) {
		heads = append(heads, h)
		told <- h
	})
	if err != nil {
		t.Fatal(err)
	}
	if late.Load() {
		t.Error("the head was told only after the rows came")
	}
	want := wire.Changes{Cursor: "12.1.x", More: true, Partial: true}
	if len(heads) != 1 || !reflect.DeepEqual(heads[0], want) {
		t.Fatalf("heads %+v, want one: %+v", heads, want)
	}
	if len(got.Changes) != len(benchRows()) || got.Cursor != want.Cursor || !got.More || !got.Partial || got.Wait {
		t.Errorf("page: %d rows, %q %v %v %v", len(got.Changes), got.Cursor, got.More, got.Wait, got.Partial)
	}
	// Not told when a member comes after the rows, or is missing.
	for _, body := range []string{
		`{"changes":[],"cursor":"c","more":true,"wait":false,"partial":false}`,
		`{"cursor":"c","more":true,"partial":false,"changes":[],"wait":true}`,
		`{"cursor":"c","more":true,"changes":[]}`,
	} {
		if _, err := wire.ReadChangesHead(strings.NewReader(body), func(h wire.Changes) { t.Errorf("%s: told %+v", body, h) }); err != nil {
			t.Fatal(err)
		}
	}
}
