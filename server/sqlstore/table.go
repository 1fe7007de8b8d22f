package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlbatch"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/wire"
)

// Table is one synced table and the names a dialect needs to write its SQL.
type Table struct {
	// Name is the quoted table name.
	Name string
	// StageName is the unquoted name of its staging table.
	StageName string
	// Stage is the quoted name of its staging table.
	Stage string
	// StageCols are the unquoted columns of a staged row in the order of
	// StageValues.
	StageCols []string

	idx     int          // the table's place in priority order
	schema  entity.Table // the table's schema
	cols    []string     // the quoted columns, id first, in schema order
	selects string       // the columns, then rowCols
	every   string       // changedJSON of a row that changed every column
}

// everyColumn returns changedJSON of a row that changed every column, and
// the column versions of such a row committed at version.
func (t *Table) everyColumn(version int64) (changed, versions string) {
	b := []byte{'{'}
	for i, c := range t.schema.Columns[1:] {
		if i > 0 {
			b = append(b, ',')
		}
		name, _ := json.Marshal(c.Name)
		b = append(append(b, name...), ':')
		b = strconv.AppendInt(b, version, 10)
	}
	return t.every, string(append(b, '}'))
}

func newTable(idx int, t entity.Table) *Table {
	tb := &Table{idx: idx, schema: t, Name: sqlident.Quote(t.Name), StageName: "_tether_stage_" + t.Name}
	tb.Stage = sqlident.Quote(tb.StageName)
	every := []string{}
	for _, c := range t.Columns[1:] {
		every = append(every, c.Name)
	}
	b, _ := json.Marshal(every)
	tb.every = string(b)
	tb.StageCols = []string{"_tenant", "_session", "_seq", "_base", "_deleted", "_hlc", "_changed", "_present", "_exact", "_increments"}
	for _, c := range t.Columns {
		tb.cols = append(tb.cols, sqlident.Quote(c.Name))
		tb.StageCols = append(tb.StageCols, c.Name)
	}
	tb.selects = strings.Join(tb.cols, ", ") + ", " + rowCols
	return tb
}

// columnList is the quoted columns joined with commas.
func (t *Table) columnList() string { return strings.Join(t.cols, ", ") }

// StageValues appends to dst the values of a staged row, in the order of
// StageCols.
func (t *Table) StageValues(dst []any, tenant, session string, seq int, r wire.Row) []any {
	exact := 1 // the row will be stored as it was pushed, unless a conflict settles otherwise
	if r.Restamped {
		exact = 0
	}
	changed := t.every // a row that holds every column and did not say what changed, the common case
	if r.Changed != nil || len(r.Values) != len(t.schema.Columns)-1 || !holdsAll(&t.schema, r) {
		changed = changedJSON(&t.schema, r)
	}
	dst = append(dst, tenant, session, seq, r.Base, r.Deleted, r.HLC, changed, present(&t.schema, r), exact, incrementsJSON(r), r.ID)
	for _, c := range t.schema.Columns[1:] {
		dst = append(dst, r.Values[c.Name])
	}
	return dst
}

// changedJSON is the JSON array of the columns a staged row changed: every
// column it holds when the device did not say.
func changedJSON(t *entity.Table, r wire.Row) string {
	cols := r.Changed
	if cols != nil { // the counters' changes are increments
		cols = changedNonCounters(t, cols)
	}
	if cols == nil {
		cols = []string{}
		for _, c := range t.Columns[1:] {
			if _, ok := r.Values[c.Name]; ok {
				cols = append(cols, c.Name)
			}
		}
	}
	b, _ := json.Marshal(cols)
	return string(b)
}

// holdsAll reports whether r holds every column of t.
func holdsAll(t *entity.Table, r wire.Row) bool {
	for _, c := range t.Columns[1:] {
		if _, ok := r.Values[c.Name]; !ok {
			return false
		}
	}
	return true
}

// present says which of t's columns (but id) a pushed row holds, one
// character each in schema order: '1' for a column it holds, '0' for one
// it does not (its device's app version lacks it, or it is a tombstone
// without values). A merge writes only the columns a row holds; "" (a table of
// only an id) stands for all of them.
func present(t *entity.Table, r wire.Row) string {
	b := make([]byte, len(t.Columns)-1)
	only := r.Changed != nil && !r.Deleted && len(changedNonCounters(t, r.Changed)) == 0
	for i, c := range t.Columns[1:] {
		b[i] = '0'
		if c.Counter || only { // never written as pushed; see counters.go
			continue
		}
		if _, ok := r.Values[c.Name]; ok {
			b[i] = '1'
		}
	}
	return string(b)
}

// MergeSet returns the SET list of the upsert that merges a row into the
// table (see [Dialect.Upsert]): assign(col) for every column but id and
// every bookkeeping column a merge writes, joined with commas. assign
// returns a whole assignment, such as col + " = excluded." + col.
func (t *Table) MergeSet(assign func(col string) string) string {
	return assignments(assign, t.cols[1:], merged)
}

// RestageSet returns the SET list of the upsert that stages a row again
// (see [Dialect.Stage]): assign(col) for every column but id and every
// bookkeeping column a staged row takes from its later copy, "_seq" last
// (MySQL assigns left to right), joined with commas.
func (t *Table) RestageSet(assign func(col string) string) string {
	return assignments(assign, t.cols[1:], restaged)
}

// assignments applies assign to each column of the lists and joins the
// results with commas.
func assignments(assign func(col string) string, lists ...[]string) string {
	var sets []string
	for _, l := range lists {
		for _, c := range l {
			sets = append(sets, assign(c))
		}
	}
	return strings.Join(sets, ", ")
}

// merged are the quoted bookkeeping columns a merge writes after the
// table's own, in the order the merge's SELECT gives them.
var merged = []string{`"_version"`, `"_deleted"`, `"_hlc"`, `"_modified_by"`, `"_origin"`, `"_session"`, `"_reason"`, `"_notify"`, `"_pushed"`}

// StageInsert writes rows, staged as batch seq of a session, with
// multi-row INSERTs that end with tail, the dialect's upsert clause for a
// row staged again. It is Dialect.Stage for databases without a bulk path.
func StageInsert(ctx context.Context, tx *sql.Tx, t *Table, tenant, session string, seq int, rows []wire.Row, tail string) error {
	cols := make([]string, len(t.StageCols))
	for i, c := range t.StageCols {
		cols[i] = sqlident.Quote(c)
	}
	ins := sqlbatch.New(tx, fmt.Sprintf(`INSERT INTO %s (%s)`, t.Stage, strings.Join(cols, ", ")), tail, len(cols))
	args := make([]any, 0, len(cols))
	for _, r := range rows {
		args = t.StageValues(args[:0], tenant, session, seq, r)
		if err := ins.Add(ctx, args...); err != nil {
			return err
		}
	}
	return ins.Flush(ctx)
}

// restaged are the bookkeeping columns a row staged again by a later
// batch takes from it, besides its values; "_seq" is last (MySQL assigns
// left to right). ("_tenant" is part of the key: it is the same.)
var restaged = []string{`"_base"`, `"_deleted"`, `"_hlc"`, `"_changed"`, `"_present"`, `"_exact"`, `"_increments"`, `"_seq"`}
