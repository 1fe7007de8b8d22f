package entity

import (
	"fmt"
	"reflect"
)

// Entity binds a registered Go struct type to its [Table]. It converts
// between struct values and rows of canonical values, one per column in
// Table.Columns order. An Entity is immutable and safe for concurrent use.
type Entity struct {
	// Table is the table the entity is stored in.
	Table Table

	typ       reflect.Type
	metaIndex int
	fields    []field // in Table.Columns order; fields[0] is the id
}

type field struct {
	Column Column
	index  []int
	codec  codec
}

// Type returns the struct type of the entity.
func (e *Entity) Type() reflect.Type { return e.typ }

// New returns a pointer to a new zero value of the entity's struct type.
func (e *Entity) New() any { return reflect.New(e.typ).Interface() }

// struct returns the addressable struct value behind ptr.
func (e *Entity) structOf(ptr any) (reflect.Value, error) {
	v := reflect.ValueOf(ptr)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Type() != e.typ {
		return reflect.Value{}, fmt.Errorf("entity %s: want non-nil *%s, got %T", e.Table.Name, e.typ.Name(), ptr)
	}
	return v.Elem(), nil
}

// ID returns the id of the struct ptr points to.
func (e *Entity) ID(ptr any) (string, error) {
	v, err := e.structOf(ptr)
	if err != nil {
		return "", err
	}
	return v.FieldByIndex(e.fields[0].index).String(), nil
}

// SetID sets the id of the struct ptr points to.
func (e *Entity) SetID(ptr any, id string) error {
	v, err := e.structOf(ptr)
	if err != nil {
		return err
	}
	v.FieldByIndex(e.fields[0].index).SetString(id)
	return nil
}

// Meta returns the embedded Meta of the struct ptr points to.
func (e *Entity) Meta(ptr any) (*Meta, error) {
	v, err := e.structOf(ptr)
	if err != nil {
		return nil, err
	}
	return v.Field(e.metaIndex).Addr().Interface().(*Meta), nil
}

// Values returns the canonical value of each column of the struct ptr
// points to, in Table.Columns order.
func (e *Entity) Values(ptr any) ([]any, error) {
	v, err := e.structOf(ptr)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(e.fields))
	for i, f := range e.fields {
		x, err := f.codec.get(v.FieldByIndex(f.index))
		if err != nil {
			return nil, fmt.Errorf("entity %s column %s: %w", e.Table.Name, f.Column.Name, err)
		}
		out[i] = x
	}
	return out, nil
}

// Load sets the fields of the struct ptr points to from canonical column
// values in Table.Columns order. NULL in a non-nullable column loads as the
// zero value.
func (e *Entity) Load(ptr any, values []any) error {
	v, err := e.structOf(ptr)
	if err != nil {
		return err
	}
	if len(values) != len(e.fields) {
		return fmt.Errorf("entity %s: %d values for %d columns", e.Table.Name, len(values), len(e.fields))
	}
	for i, f := range e.fields {
		fv := v.FieldByIndex(f.index)
		if values[i] == nil && !f.codec.nullable {
			// A column added after the row was written, or a client
			// that does not know it: the zero value.
			fv.SetZero()
			continue
		}
		if err := f.codec.set(fv, values[i]); err != nil {
			return fmt.Errorf("entity %s column %s: %w", e.Table.Name, f.Column.Name, err)
		}
	}
	return nil
}
