package localdb_test

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/localdb"
)

var update = flag.Bool("update", false, "rewrite testdata/values.golden and this driver's testdata/values-*.db")

// Sample holds a value of every column kind.
type Sample struct {
	entity.Meta `sync:"samples,1"`
	ID          string         `db:"id"`
	S           string         `db:"s"`
	I           int64          `db:"i"`
	F           float64        `db:"f"`
	B           bool           `db:"b"`
	T           time.Time      `db:"t"`
	PT          *time.Time     `db:"pt"`
	Blob        []byte         `db:"blob"`
	Doc         map[string]any `db:"doc,json"`
}

// samples are the values that must survive either driver unchanged.
func samples() []Sample {
	ist := time.FixedZone("IST", 5*3600+30*60)
	nanos := time.Date(2026, 3, 4, 5, 6, 7, 123456789, ist)
	zero := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	return []Sample{
		{ID: "a-min", S: "", I: math.MinInt64, F: -math.MaxFloat64, B: false, T: nanos, Blob: []byte{}},
		{ID: "b-max", S: "ünïcødé ✓ 'quote' \"dq\"", I: math.MaxInt64, F: math.MaxFloat64, B: true,
			T: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), PT: &zero,
			Blob: []byte{0, 1, 2, 0xff, 0, 'x'}, Doc: map[string]any{"k": []any{1.5, "two", nil, true}, "e": "é"}},
		{ID: "c-small", S: "line\nbreak\x00nul", I: -1, F: math.SmallestNonzeroFloat64, B: true,
			T: time.Date(2000, 2, 29, 12, 0, 0, 1, time.FixedZone("", -7*3600)), PT: &nanos,
			Blob: bytes.Repeat([]byte{0xab, 0}, 20), Doc: map[string]any{}},
		{ID: "d-frac", S: "2026-01-02T03:04:05.000000000Z", I: 0, F: 0.1 + 0.2, T: zero,
			Doc: map[string]any{"n": 1e300, "tiny": 1e-300}},
		{ID: "e-int-float", I: 1 << 53, F: 9007199254740993, T: nanos.Add(time.Nanosecond), Blob: []byte("text-like")},
	}
}

func sampleRegistry(t testing.TB) *entity.Registry {
	t.Helper()
	reg := entity.NewRegistry()
	if err := reg.Register(Sample{}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// equalSample reports whether got holds want's values: times as the same
// instant (stored in UTC), a nil blob as an empty one.
func equalSample(got, want Sample) bool {
	same := func(a, b *time.Time) bool {
		return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
	}
	return got.ID == want.ID && got.S == want.S && got.I == want.I &&
		math.Float64bits(got.F) == math.Float64bits(want.F) && got.B == want.B &&
		got.T.Equal(want.T) && same(got.PT, want.PT) && bytes.Equal(got.Blob, want.Blob) &&
		(len(got.Doc) == 0 && len(want.Doc) == 0 || reflect.DeepEqual(got.Doc, want.Doc))
}

func checkSamples(t *testing.T, db *localdb.DB) {
	t.Helper()
	for _, want := range samples() {
		var got Sample
		if err := db.Get(ctx, &got, want.ID); err != nil {
			t.Fatalf("Get(%s): %v", want.ID, err)
		}
		if !equalSample(got, want) {
			t.Errorf("Get(%s)=\n%+v, want\n%+v", want.ID, got, want)
		}
	}
}

// dumpSamples returns each stored value as SQLite itself prints it
// (typeof and quote, text in hex), which does not depend on the driver.
func dumpSamples(t *testing.T, path string) string {
	t.Helper()
	raw, err := sqlitedriver.Open(path, sqlitedriver.Config{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cols := []string{"s", "i", "f", "b", "t", "pt", "blob", "doc"}
	var sel []string
	for _, c := range cols {
		// quote() stops text at a NUL: text is shown in hex.
		sel = append(sel, fmt.Sprintf("'%s=' || typeof(%s) || ':' || iif(typeof(%s) = 'text', hex(%s), quote(%s))", c, c, c, c, c))
	}
	rows, err := raw.QueryContext(ctx, `SELECT id, `+strings.Join(sel, " || ' ' || ")+` FROM samples ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, line string
		if err := rows.Scan(&id, &line); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s\n", id, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// driverFile is the sample database written by the linked driver.
func driverFile() string {
	if sqlitedriver.PureGo {
		return "testdata/values-purego.db"
	}
	return "testdata/values-cgo.db"
}

// TestValuesRoundTrip writes a value of every kind at its edges (int64
// limits, the largest and smallest floats, times with nanoseconds in
// other zones, binary blobs, JSON) and reads each back unchanged, with
// each stored as the same SQLite value whichever driver wrote it: the
// dump is compared with one golden file under both drivers.
func TestValuesRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "values.db")
	db, err := localdb.Open(ctx, path, sampleRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples() {
		if err := db.Save(ctx, &s); err != nil {
			t.Fatalf("Save(%s): %v", s.ID, err)
		}
	}
	checkSamples(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	got := dumpSamples(t, path)
	if *update {
		if err := os.WriteFile("testdata/values.golden", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := copyFile(path, driverFile()); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/values.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("stored values under %s:\n%s\nwant (testdata/values.golden):\n%s", sqlitedriver.Name, got, want)
	}
}

// TestValuesReadAcrossDrivers reads the sample databases that each driver
// wrote (testdata/values-cgo.db and values-purego.db, made with -update)
// through the linked driver: every value comes back the same.
func TestValuesReadAcrossDrivers(t *testing.T) {
	for _, name := range []string{"values-cgo.db", "values-purego.db"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name)
			if err := copyFile(filepath.Join("testdata", name), path); err != nil {
				t.Fatal(err)
			}
			db, err := localdb.Open(ctx, path, sampleRegistry(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			checkSamples(t, db)
		})
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
