package entity

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// ErrNotRegistered is returned for a value whose type was never registered.
var ErrNotRegistered = errors.New("entity type not registered")

// Registry holds the registered entity types. It is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	byType  map[reflect.Type]*Entity
	byTable map[string]*Entity
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byType: map[reflect.Type]*Entity{}, byTable: map[string]*Entity{}}
}

// Register adds the types of the given struct values (or pointers to them).
// It returns an error naming the type and field of the first invalid
// declaration; on error nothing of that call is registered.
func (r *Registry) Register(values ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var added []*Entity
	seen := map[string]bool{}
	for _, v := range values {
		e, err := bind(reflect.TypeOf(v))
		if err != nil {
			return err
		}
		if _, ok := r.byType[e.typ]; ok {
			return fmt.Errorf("entity %s: already registered", e.typ)
		}
		if _, ok := r.byTable[e.Table.Name]; ok || seen[e.Table.Name] {
			return fmt.Errorf("entity %s: duplicate table %q", e.typ, e.Table.Name)
		}
		seen[e.Table.Name] = true
		added = append(added, e)
	}
	// References must name tables registered before or together, that
	// sync first.
	s := Schema{}
	for _, e := range r.byTable {
		s.Tables = append(s.Tables, e.Table)
	}
	for _, e := range added {
		s.Tables = append(s.Tables, e.Table)
	}
	for _, e := range added {
		if err := s.checkRefs(&e.Table); err != nil {
			return fmt.Errorf("entity %s: %w", e.typ, err)
		}
	}
	for _, e := range added {
		r.byType[e.typ] = e
		r.byTable[e.Table.Name] = e
	}
	return nil
}

// Of returns the entity of v, a registered struct or a pointer to one.
// It returns ErrNotRegistered for any other value.
func (r *Registry) Of(v any) (*Entity, error) {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	r.mu.RLock()
	e := r.byType[t]
	r.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("%v: %w", t, ErrNotRegistered)
	}
	return e, nil
}

// ByTable returns the entity stored in the named table, or nil.
func (r *Registry) ByTable(name string) *Entity {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byTable[name]
}

// Entities returns the registered entities in priority order.
func (r *Registry) Entities() []*Entity {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := r.schemaLocked()
	out := make([]*Entity, len(s.Tables))
	for i, t := range s.Tables {
		out[i] = r.byTable[t.Name]
	}
	return out
}

// Schema returns the description of every registered table, in priority order.
func (r *Registry) Schema() Schema {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.schemaLocked()
}

func (r *Registry) schemaLocked() Schema {
	var s Schema
	for _, e := range r.byTable {
		t := e.Table
		t.Columns = append([]Column(nil), t.Columns...)
		s.Tables = append(s.Tables, t)
	}
	sortTables(s.Tables)
	return s
}

var metaType = reflect.TypeOf(Meta{})

// bind inspects a struct type and builds its entity.
func bind(t reflect.Type) (*Entity, error) {
	if t == nil {
		return nil, errors.New("entity: nil value")
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("entity %s: not a struct", t)
	}
	e := &Entity{typ: t, metaIndex: -1}
	cols := map[string]string{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type == metaType && f.Anonymous {
			if err := e.parseSyncTag(f); err != nil {
				return nil, err
			}
			e.metaIndex = i
			continue
		}
		if !f.IsExported() || f.Tag.Get("db") == "-" {
			continue
		}
		fd, err := bindField(f)
		if err != nil {
			return nil, fmt.Errorf("entity %s field %s: %w", t, f.Name, err)
		}
		if prev, dup := cols[fd.Column.Name]; dup {
			return nil, fmt.Errorf("entity %s field %s: duplicate column %q (also field %s)", t, f.Name, fd.Column.Name, prev)
		}
		cols[fd.Column.Name] = f.Name
		if fd.Column.Name == "id" {
			if f.Type.Kind() != reflect.String || fd.codec.nullable || fd.Column.Kind != KindText {
				return nil, fmt.Errorf("entity %s field %s: id must be a string", t, f.Name)
			}
			e.fields = append([]field{fd}, e.fields...)
			continue
		}
		e.fields = append(e.fields, fd)
	}
	if e.metaIndex < 0 {
		return nil, fmt.Errorf("entity %s: no embedded entity.Meta with a sync tag", t)
	}
	if _, ok := cols["id"]; !ok {
		return nil, fmt.Errorf("entity %s: no string ID field (column \"id\")", t)
	}
	for _, f := range e.fields {
		e.Table.Columns = append(e.Table.Columns, f.Column)
	}
	return e, nil
}

func (e *Entity) parseSyncTag(f reflect.StructField) error {
	tag, ok := f.Tag.Lookup("sync")
	if !ok || tag == "" {
		return fmt.Errorf("entity %s field Meta: missing sync tag (want `sync:\"table,priority\"`)", e.typ)
	}
	name, prio, found := strings.Cut(tag, ",")
	if !ValidIdent(name) {
		return fmt.Errorf("entity %s field Meta: malformed sync tag %q: invalid table name %q", e.typ, tag, name)
	}
	e.Table.Name = name
	if found {
		p, err := strconv.Atoi(strings.TrimSpace(prio))
		if err != nil {
			return fmt.Errorf("entity %s field Meta: malformed sync tag %q: priority %q is not an integer", e.typ, tag, prio)
		}
		e.Table.Priority = p
	}
	return nil
}

func bindField(f reflect.StructField) (field, error) {
	name, opts, _ := strings.Cut(f.Tag.Get("db"), ",")
	if name == "" {
		name = snake(f.Name)
	}
	if !ValidIdent(name) {
		return field{}, fmt.Errorf("invalid column name %q", name)
	}
	asJSON, counter, ref, onDelete := false, false, "", ""
	if opts != "" {
		for o := range strings.SplitSeq(opts, ",") {
			switch {
			case o == "json":
				asJSON = true
			case o == "counter":
				counter = true
			case o == Cascade || o == Restore:
				onDelete = o
			case strings.HasPrefix(o, "ref="):
				ref = strings.TrimPrefix(o, "ref=")
				if !ValidIdent(ref) {
					return field{}, fmt.Errorf("db tag option %q: invalid table name", o)
				}
			default:
				return field{}, fmt.Errorf("unknown db tag option %q", o)
			}
		}
	}
	var c codec
	var err error
	if asJSON {
		c = jsonCodec(f.Type)
	} else {
		c, err = codecFor(f.Type)
	}
	if err != nil {
		return field{}, err
	}
	if onDelete != "" && ref == "" {
		return field{}, fmt.Errorf("db tag option %q needs ref=table", onDelete)
	}
	if counter && (c.kind != KindInteger || c.nullable || ref != "") {
		return field{}, fmt.Errorf("db tag option counter needs a non-null integer field, not %s", f.Type)
	}
	return field{
		Column: Column{Name: name, Kind: c.kind, Nullable: c.nullable, Ref: ref, OnDelete: onDelete, Counter: counter},
		index:  f.Index,
		codec:  c,
	}, nil
}

// snake converts a Go field name to snake_case: CustomerID -> customer_id.
func snake(s string) string {
	rs := []rune(s)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			prevLower := i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]))
			nextLower := i > 0 && i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
