package entity_test

import (
	"database/sql"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
)

type everything struct {
	entity.Meta `sync:"everything,3"`
	ID          string `db:"id"`
	S           string
	I           int
	I8          int8
	I16         int16
	I32         int32
	I64         int64
	U           uint
	U8          uint8
	U16         uint16
	U32         uint32
	U64         uint64
	F32         float32
	F64         float64
	B           bool
	T           time.Time
	Blob        []byte
	PS          *string
	PI          *int64
	PT          *time.Time
	Tags        []string          `db:"tags,json"`
	Attrs       map[string]string `db:"attrs,json"`
	NS          sql.NullString    `db:"ns"`
	NI          sql.NullInt64     `db:"ni"`
	CustomerID  string
	HTTPServer  string
	skipped     string //nolint:unused
	Ignored     string `db:"-"`
}

func TestRegisterAcceptsEveryType(t *testing.T) {
	reg := entity.NewRegistry()
	if err := reg.Register(everything{}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	want := map[string]entity.Column{
		"id":          {Name: "id", Kind: entity.KindText},
		"s":           {Name: "s", Kind: entity.KindText},
		"i":           {Name: "i", Kind: entity.KindInteger},
		"u64":         {Name: "u64", Kind: entity.KindInteger},
		"f32":         {Name: "f32", Kind: entity.KindReal},
		"b":           {Name: "b", Kind: entity.KindBool},
		"t":           {Name: "t", Kind: entity.KindTime},
		"blob":        {Name: "blob", Kind: entity.KindBlob},
		"ps":          {Name: "ps", Kind: entity.KindText, Nullable: true},
		"pi":          {Name: "pi", Kind: entity.KindInteger, Nullable: true},
		"pt":          {Name: "pt", Kind: entity.KindTime, Nullable: true},
		"tags":        {Name: "tags", Kind: entity.KindJSON, Nullable: true},
		"attrs":       {Name: "attrs", Kind: entity.KindJSON, Nullable: true},
		"ns":          {Name: "ns", Kind: entity.KindText, Nullable: true},
		"ni":          {Name: "ni", Kind: entity.KindInteger, Nullable: true},
		"customer_id": {Name: "customer_id", Kind: entity.KindText},
		"http_server": {Name: "http_server", Kind: entity.KindText},
	}
	tbl := reg.Schema().Table("everything")
	if tbl == nil || tbl.Priority != 3 {
		t.Fatalf("Schema().Table(everything)=%+v, want priority 3", tbl)
	}
	if tbl.Columns[0].Name != "id" {
		t.Errorf("first column=%q, want id", tbl.Columns[0].Name)
	}
	if len(tbl.Columns) != 26 {
		t.Errorf("len(Columns)=%d, want 26: %+v", len(tbl.Columns), tbl.Columns)
	}
	for name, w := range want {
		got, ok := tbl.Column(name)
		if !ok || got != w {
			t.Errorf("Column(%q)=%+v,%v want %+v", name, got, ok, w)
		}
	}
	for _, bad := range []string{"skipped", "ignored", "meta"} {
		if _, ok := tbl.Column(bad); ok {
			t.Errorf("column %q should not exist", bad)
		}
	}
}

func TestValuesRoundTrip(t *testing.T) {
	reg := entity.NewRegistry()
	if err := reg.Register(&everything{}); err != nil {
		t.Fatal(err)
	}
	e, err := reg.Of(&everything{})
	if err != nil {
		t.Fatal(err)
	}
	s := "x"
	n := int64(-7)
	tm := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	in := everything{ID: "a", S: "s", I: -1, I8: -8, I16: 16, I32: 32, I64: 1 << 60, U: 1, U8: 8, U16: 16, U32: 32, U64: 1 << 62,
		F32: 1.5, F64: 2.25, B: true, T: tm, Blob: []byte{0, 1}, PS: &s, PI: &n, PT: &tm,
		Tags: []string{"a", "b"}, Attrs: map[string]string{"k": "v"},
		NS: sql.NullString{String: "n", Valid: true}, CustomerID: "c"}
	vals, err := e.Values(&in)
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON, as on the wire.
	raw, _ := json.Marshal(vals)
	var msgs []json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		t.Fatal(err)
	}
	back := make([]any, len(msgs))
	for i, m := range msgs {
		back[i], err = e.Table.Columns[i].Kind.FromWire(m)
		if err != nil {
			t.Fatalf("FromWire(%s): %v", e.Table.Columns[i].Name, err)
		}
	}
	var out everything
	if err := e.Load(&out, back); err != nil {
		t.Fatal(err)
	}
	if !out.T.Equal(tm) || out.T.Location() != time.UTC || !out.PT.Equal(tm) {
		t.Errorf("time=%v, want %v in UTC", out.T, tm)
	}
	in.T, in.PT = out.T, out.PT
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

type (
	noMeta struct {
		ID string
	}
	noTag struct {
		entity.Meta
		ID string
	}
	badTag struct {
		entity.Meta `sync:"Bad Name,1"`
		ID          string
	}
	badPrio struct {
		entity.Meta `sync:"t,one"`
		ID          string
	}
	noID struct {
		entity.Meta `sync:"t,1"`
		Name        string
	}
	intID struct {
		entity.Meta `sync:"t,1"`
		ID          int
	}
	badType struct {
		entity.Meta `sync:"t,1"`
		ID          string
		Ch          chan int
	}
	dupCol struct {
		entity.Meta `sync:"t,1"`
		ID          string
		A           string `db:"x"`
		B           string `db:"x"`
	}
	badOpt struct {
		entity.Meta `sync:"t,1"`
		ID          string
		A           []string `db:"a,jsn"`
	}
	tableA struct {
		entity.Meta `sync:"same,1"`
		ID          string
	}
	tableB struct {
		entity.Meta `sync:"same,2"`
		ID          string
	}
)

func TestRegisterErrors(t *testing.T) {
	tests := []struct {
		name  string
		value []any
		want  string
	}{
		{"not a struct", []any{3}, "not a struct"},
		{"no meta", []any{noMeta{}}, "no embedded entity.Meta"},
		{"no sync tag", []any{noTag{}}, "missing sync tag"},
		{"malformed table", []any{badTag{}}, "invalid table name"},
		{"malformed priority", []any{badPrio{}}, "priority \"one\""},
		{"no id", []any{noID{}}, "no string ID"},
		{"int id", []any{intID{}}, "field ID: id must be a string"},
		{"unsupported", []any{badType{}}, "field Ch: unsupported type chan int"},
		{"duplicate column", []any{dupCol{}}, "field B: duplicate column \"x\""},
		{"bad option", []any{badOpt{}}, "unknown db tag option"},
		{"duplicate table", []any{tableA{}, tableB{}}, "duplicate table \"same\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := entity.NewRegistry()
			err := reg.Register(tt.value...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Register()=%v, want error containing %q", err, tt.want)
			}
			if n := len(reg.Schema().Tables); n != 0 {
				t.Errorf("%d tables registered after error, want 0", n)
			}
		})
	}
}

func TestSchemaJSON(t *testing.T) {
	reg := entity.NewRegistry()
	if err := reg.Register(tableB{}, everything{}); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(reg.Schema())
	if err != nil {
		t.Fatal(err)
	}
	got, err := entity.ParseSchema(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, reg.Schema()) {
		t.Errorf("ParseSchema(Marshal(s))=%+v, want %+v", got, reg.Schema())
	}
	if got.Tables[0].Name != "same" {
		t.Errorf("first table=%q, want priority-2 table before priority-3", got.Tables[0].Name)
	}
	if _, err := entity.ParseSchema([]byte(`{"tables":[{"name":"x","columns":[{"name":"name","kind":"text"}]}]}`)); err == nil {
		t.Error("ParseSchema accepted a table without id")
	}
}

func TestFromWireErrors(t *testing.T) {
	tests := []struct {
		kind entity.Kind
		in   string
	}{
		{entity.KindText, `1`},
		{entity.KindInteger, `"1"`},
		{entity.KindInteger, `1.5`},
		{entity.KindReal, `true`},
		{entity.KindBool, `0`},
		{entity.KindTime, `"yesterday"`},
		{entity.KindBlob, `"***"`},
		{entity.KindJSON, `"{"`},
	}
	for _, tt := range tests {
		if _, err := tt.kind.FromWire(json.RawMessage(tt.in)); err == nil {
			t.Errorf("%s.FromWire(%s) succeeded, want error", tt.kind, tt.in)
		}
	}
}

type refParent struct {
	entity.Meta `sync:"parents,1"`
	ID          string `db:"id"`
}

type refChild struct {
	entity.Meta `sync:"children,2"`
	ID          string `db:"id"`
	ParentID    string `db:"parent_id,ref=parents"`
}

type refSamePriority struct {
	entity.Meta `sync:"siblings,1"`
	ID          string `db:"id"`
	ParentID    string `db:"parent_id,ref=parents"`
}

type refInt struct {
	entity.Meta `sync:"ints,2"`
	ID          string `db:"id"`
	ParentID    int    `db:"parent_id,ref=parents"`
}

func TestReferences(t *testing.T) {
	reg := entity.NewRegistry()
	if err := reg.Register(refChild{}); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("child before its parent: %v", err)
	}
	if err := reg.Register(refParent{}, refChild{}); err != nil {
		t.Fatal(err)
	}
	s := reg.Schema()
	if c, _ := s.Table("children").Column("parent_id"); c.Ref != "parents" {
		t.Errorf("column %+v, want a reference to parents", c)
	}
	if err := reg.Register(refSamePriority{}); err == nil || !strings.Contains(err.Error(), "priority") {
		t.Errorf("reference to a table of the same priority: %v", err)
	}
	if err := reg.Register(refInt{}); err == nil || !strings.Contains(err.Error(), "must be text") {
		t.Errorf("integer reference: %v", err)
	}
	data, _ := json.Marshal(s)
	back, err := entity.ParseSchema(data)
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Errorf("schema round trip: %v", err)
	}
}

// A reference declares its policy in the tag: restore by default, or
// cascade; a policy without a reference is refused.
func TestReferencePolicy(t *testing.T) {
	type parent struct {
		entity.Meta `sync:"parents,1"`
		ID          string `db:"id"`
	}
	type cascading struct {
		entity.Meta `sync:"children,2"`
		ID          string `db:"id"`
		ParentID    string `db:"parent_id,ref=parents,cascade"`
		OtherID     string `db:"other_id,ref=parents"`
	}
	type stray struct {
		entity.Meta `sync:"strays,2"`
		ID          string `db:"id"`
		Note        string `db:"note,cascade"`
	}
	reg := entity.NewRegistry()
	if err := reg.Register(parent{}, cascading{}); err != nil {
		t.Fatal(err)
	}
	s := reg.Schema()
	if c, _ := s.Table("children").Column("parent_id"); c.OnDelete != entity.Cascade {
		t.Errorf("parent_id: on delete %q, want cascade", c.OnDelete)
	}
	if c, _ := s.Table("children").Column("other_id"); c.OnDelete != "" {
		t.Errorf("other_id: on delete %q, want the default (restore)", c.OnDelete)
	}
	if err := entity.NewRegistry().Register(parent{}, stray{}); err == nil || !strings.Contains(err.Error(), "needs ref=table") {
		t.Errorf("cascade without a reference: %v, want an error", err)
	}
}
