package entity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Schema describes the synced tables. It is what the server needs to know of
// the application's entities, and it marshals to JSON.
type Schema struct {
	Tables []Table `json:"tables"`
}

// Table describes one synced table.
type Table struct {
	Name     string   `json:"name"`
	Priority int      `json:"priority"`
	Columns  []Column `json:"columns"` // the first column is always "id"
}

// Column describes one column of a synced table.
type Column struct {
	Name     string `json:"name"`
	Kind     Kind   `json:"kind"`
	Nullable bool   `json:"nullable,omitempty"`
	// Ref names the table whose id this column holds (`db:"col,ref=table"`):
	// a foreign key on devices. The table must sync first (lower priority).
	Ref string `json:"ref,omitempty"`
	// OnDelete is the policy of a reference when edits on different
	// devices would leave a live row referencing a deleted one (G12):
	// Restore (the default, `db:"col,ref=table"` or `,restore`) brings the
	// deleted row back, and tells the device whose delete was undone;
	// Cascade (`db:"col,ref=table,cascade"`) deletes the referencing rows
	// with it, and tells the devices whose rows were deleted.
	OnDelete string `json:"on_delete,omitempty"`
	// Counter marks a column whose changes add up (`db:"col,counter"`, on
	// a non-null integer): each device pushes the increments it made, and
	// the server adds them to its total exactly once, outside the row's
	// conflict rule.
	Counter bool `json:"counter,omitempty"`
}

// The reference policies of Column.OnDelete.
const (
	Restore = "restore"
	Cascade = "cascade"
)

var identRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// ValidIdent reports whether s may name a table or column: lower-case
// letters, digits and underscores, starting with a letter, and not starting
// with the reserved prefix "_".
func ValidIdent(s string) bool { return identRE.MatchString(s) }

// Column returns the column named name.
func (t *Table) Column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Table returns the table named name, or nil.
func (s Schema) Table(name string) *Table {
	for i := range s.Tables {
		if s.Tables[i].Name == name {
			return &s.Tables[i]
		}
	}
	return nil
}

// Validate checks that the schema is well formed: valid and unique names, an
// "id" text column first in each table, known kinds.
func (s *Schema) Validate() error {
	seen := map[string]bool{}
	for _, t := range s.Tables {
		if !ValidIdent(t.Name) {
			return fmt.Errorf("schema: invalid table name %q", t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("schema: duplicate table %q", t.Name)
		}
		seen[t.Name] = true
		if len(t.Columns) == 0 || t.Columns[0].Name != "id" || t.Columns[0].Kind != KindText || t.Columns[0].Nullable {
			return fmt.Errorf("schema: table %q: first column must be non-null text \"id\"", t.Name)
		}
		cols := map[string]bool{}
		for _, c := range t.Columns {
			if !ValidIdent(c.Name) {
				return fmt.Errorf("schema: table %q: invalid column name %q", t.Name, c.Name)
			}
			if cols[c.Name] {
				return fmt.Errorf("schema: table %q: duplicate column %q", t.Name, c.Name)
			}
			cols[c.Name] = true
			if !c.Kind.Valid() {
				return fmt.Errorf("schema: table %q column %q: unknown kind %q", t.Name, c.Name, c.Kind)
			}
			if c.Counter && (c.Kind != KindInteger || c.Nullable || c.Ref != "") {
				return fmt.Errorf("schema: table %q column %q: a counter must be a non-null integer without a reference", t.Name, c.Name)
			}
		}
	}
	for _, t := range s.Tables {
		if err := s.checkRefs(&t); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	return nil
}

// checkRefs checks that t's references name text columns and tables of s
// that sync before t.
func (s *Schema) checkRefs(t *Table) error {
	for _, c := range t.Columns {
		if c.Ref == "" {
			if c.OnDelete != "" {
				return fmt.Errorf("table %q column %q: on_delete %q without a reference", t.Name, c.Name, c.OnDelete)
			}
			continue
		}
		if c.OnDelete != "" && c.OnDelete != Restore && c.OnDelete != Cascade {
			return fmt.Errorf("table %q column %q: unknown on_delete %q (restore or cascade)", t.Name, c.Name, c.OnDelete)
		}
		if c.Kind != KindText {
			return fmt.Errorf("table %q column %q: a reference must be text, not %s", t.Name, c.Name, c.Kind)
		}
		p := s.Table(c.Ref)
		if p == nil {
			return fmt.Errorf("table %q column %q references table %q, which is not registered (register parents first, or together)", t.Name, c.Name, c.Ref)
		}
		if p.Priority >= t.Priority {
			return fmt.Errorf("table %q column %q references table %q, whose priority %d is not lower than %d: parents must sync first",
				t.Name, c.Name, c.Ref, p.Priority, t.Priority)
		}
	}
	return nil
}

// sortTables orders tables by priority, then name: the order in which they
// are pushed and applied.
func sortTables(ts []Table) {
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].Priority != ts[j].Priority {
			return ts[i].Priority < ts[j].Priority
		}
		return ts[i].Name < ts[j].Name
	})
}

// ParseSchema decodes and validates a JSON schema, as written by
// json.Marshal of a [Schema]. Tables are put in priority order. It is
// strict: a key that is not a field of Schema, Table or Column is refused
// by name (a misspelt "nulable" would otherwise be ignored), and so is
// anything after the schema's object.
func ParseSchema(data []byte) (Schema, error) {
	var s Schema
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return Schema{}, fmt.Errorf("schema: unknown key %s: %s", name, schemaKeys)
		}
		return Schema{}, fmt.Errorf("schema: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Schema{}, errors.New("schema: data after the schema's JSON object")
	}
	if err := s.Validate(); err != nil {
		return Schema{}, err
	}
	sortTables(s.Tables)
	return s, nil
}

// schemaKeys lists the keys of a schema file, for the error about an
// unknown one.
const schemaKeys = `want "tables" at the top; in a table "name", "priority" and "columns"; in a column "name", "kind", "nullable", "ref", "on_delete" and "counter"`

// Default is the SQL literal of the value a column takes in rows written
// without it (rows that existed before it was added, rows pushed by a
// device whose schema lacks it): NULL for a nullable column, else the zero
// value of its kind. The literal reads the same in SQLite, PostgreSQL and
// MySQL.
func (c Column) Default() string {
	if c.Nullable {
		return "NULL"
	}
	switch c.Kind {
	case KindText:
		return "''"
	case KindInteger, KindReal:
		return "0"
	case KindBool:
		return "false"
	case KindTime:
		return "'" + FormatTime(time.Time{}) + "'"
	case KindJSON:
		return "'null'"
	}
	return "NULL" // blobs: a nil []byte
}
