package entity_test

import (
	"testing"

	"github.com/tethersync/tether/entity"
)

func TestDigest(t *testing.T) {
	table := &entity.Table{Name: "t", Columns: []entity.Column{
		{Name: "id", Kind: entity.KindText}, {Name: "s", Kind: entity.KindText, Nullable: true},
		{Name: "i", Kind: entity.KindInteger}, {Name: "f", Kind: entity.KindReal},
		{Name: "b", Kind: entity.KindBool}, {Name: "blob", Kind: entity.KindBlob, Nullable: true},
	}}
	type row struct {
		id      string
		deleted bool
		vals    []any
	}
	sum := func(rows ...row) string {
		d := entity.NewDigest(table)
		for _, r := range rows {
			if err := d.Add(r.id, r.deleted, r.vals); err != nil {
				t.Fatal(err)
			}
		}
		return d.Sum()
	}
	a := row{"a", false, []any{"x", int64(1), 1.5, true, []byte{1}}}
	b := row{"b", false, []any{nil, int64(2), 2.0, false, nil}}
	base := sum(a, b)
	if sum(a, b) != base {
		t.Fatal("the same rows gave two digests")
	}
	for name, other := range map[string]string{
		"no rows":         sum(),
		"one row less":    sum(a),
		"order":           sum(b, a),
		"value":           sum(a, row{"b", false, []any{nil, int64(3), 2.0, false, nil}}),
		"null vs empty":   sum(a, row{"b", false, []any{"", int64(2), 2.0, false, nil}}),
		"deleted":         sum(a, row{"b", true, nil}),
		"id":              sum(a, row{"c", false, b.vals}),
		"string boundary": sum(row{"a", false, []any{"xy", int64(1), 1.5, true, []byte{1}}}, b),
		"blob vs string":  sum(a, row{"b", false, []any{nil, int64(2), 2.0, false, []byte{}}}),
		"bool":            sum(a, row{"b", false, []any{nil, int64(2), 2.0, true, nil}}),
		"float bits":      sum(a, row{"b", false, []any{nil, int64(2), 2.0000000000000004, false, nil}}),
	} {
		if other == base {
			t.Errorf("%s: digest unchanged", name)
		}
	}
	// A deleted row counts by its id alone: its values do not matter.
	if sum(row{"a", true, nil}) != sum(row{"a", true, []any{"anything"}}) {
		t.Error("a tombstone's values changed its digest")
	}
	d := entity.NewDigest(table)
	if err := d.Add("a", false, []any{int32(1), int64(1), 1.5, true, nil}); err == nil {
		t.Error("a non-canonical value (int32) was accepted")
	}
	if err := d.Add("a", false, []any{"x"}); err == nil {
		t.Error("a short row was accepted")
	}
}
