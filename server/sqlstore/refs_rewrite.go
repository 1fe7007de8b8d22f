package sqlstore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tethersync/tether/wire"
)

// refChunk is how many rows one statement of the reference rules names:
// its parameters (about five a row) stay far below every database's
// limit, the CASE that gives each row its own reason stays short, and
// PostgreSQL, before it has statistics of a table, still looks the rows
// up by key rather than scanning the tenant's rows (at 100 it scanned:
// quadratic again).
const refChunk = 16

// fewRows is how many rows of a table the rules may rewrite in a commit
// for their audit entries and conflicts to be written and read by key,
// refChunk at a time; past it, they are all read or rewritten at once,
// by the commit's version, which costs about what writing the commit's
// rows did.
const fewRows = 4 * refChunk

// rewrites are the rows of one table that one rule deletes, or brings
// back, in a round: each with why, in the order the rule met them.
type rewrites struct {
	t   *Table
	ids []string
	why map[string]string // the last reason given wins, as it was written last
}

func newRewrites(t *Table) *rewrites { return &rewrites{t: t, why: map[string]string{}} }

// report is the conflict that tells the pushing device its row was
// rewritten: by the rule met last (seq orders them), for why.
type report struct {
	t   *Table
	seq int
	why string
}

// rewriter rewrites the rows the reference rules of one commit change, in
// bulk: each row is written at the commit's version, by the pushing device
// and user, and the device whose action this undoes is told: the pushing
// one by a conflict when the row is its own (one per row, the last rule's,
// emitted once the rules settle), else the row's last writer, through the
// row's "_notify".
type rewriter struct {
	a        *applier
	version  int64
	own      map[rowKey]bool // rows the pushed session wrote
	reported map[rowKey]report
	seq      int
	touched  map[*Table]map[string]bool // the rows rewritten, by table
}

// add adds row id of b's table to b, for why.
func (w *rewriter) add(b *rewrites, id, why string) {
	if _, ok := b.why[id]; !ok {
		b.ids = append(b.ids, id)
	}
	b.why[id] = why
	if k := (rowKey{b.t.schema.Name, id}); w.own[k] {
		w.seq++
		w.reported[k] = report{t: b.t, seq: w.seq, why: why}
	}
}

// apply deletes the rows of b, or brings them back, refChunk at a time.
func (w *rewriter) apply(ctx context.Context, b *rewrites, deleted bool) error {
	a, t := w.a, b.t
	for ids := range slices.Chunk(b.ids, refChunk) {
		notify, err := w.writers(ctx, t, ids)
		if err != nil {
			return err
		}
		// A row this commit wrote already stands at its version: the rows
		// move away first, so that the rewrite changes "_version", which
		// is how capture triggers (CaptureExternalWrites) tell tether's
		// writes from a back office's.
		var pre []any
		if _, err := a.tx.ExecContext(ctx, a.s.d.Rebind(`UPDATE `+t.Name+` SET "_version" = -1 WHERE `+
			rowsOf(&pre, rowKeyTerm, []any{a.p.Tenant}, ids)), pre...); err != nil {
			return fmt.Errorf("rewrite %s: %w", t.schema.Name, err)
		}
		args := []any{deleted, w.version, a.session, a.device, a.p.User}
		reasons := caseOf(ids, func(id string) string { return b.why[id] }, &args)
		notices := caseOf(ids, func(id string) string { return notify[id] }, &args)
		these := rowsOf(&args, rowKeyTerm, []any{a.p.Tenant}, ids)
		if _, err := a.tx.ExecContext(ctx, a.s.d.Rebind(`UPDATE `+t.Name+` SET "_deleted" = ?, "_version" = ?, "_session" = ?, "_origin" = ?,
			"_modified_by" = ?, "_reason" = `+reasons+`, "_notify" = `+notices+`, "_pushed" = 0 WHERE `+these), args...); err != nil {
			return fmt.Errorf("rewrite %s: %w", t.schema.Name, err)
		}
		if w.touched[t] == nil {
			w.touched[t] = map[string]bool{}
		}
		for _, id := range ids {
			w.touched[t][id] = true
		}
	}
	return nil
}

// writers returns the devices to tell of the rewrite of the rows ids of t
// that the pushed session did not write: each row's last writer, unless
// that is the pushing device (it pulls the change).
func (w *rewriter) writers(ctx context.Context, t *Table, ids []string) (map[string]string, error) {
	a := w.a
	var others []string
	for _, id := range ids {
		if !w.own[rowKey{t.schema.Name, id}] {
			others = append(others, id)
		}
	}
	if len(others) == 0 {
		return nil, nil
	}
	var args []any
	these := rowsOf(&args, rowKeyTerm, []any{a.p.Tenant}, others)
	rows, err := a.tx.QueryContext(ctx, a.s.d.Rebind(`SELECT "id", "_origin" FROM `+t.Name+` WHERE `+these), args...)
	if err != nil {
		return nil, fmt.Errorf("%s: last writers: %w", t.schema.Name, err)
	}
	defer rows.Close()
	out := make(map[string]string, len(others))
	found := 0
	for rows.Next() {
		var id, origin string
		if err := rows.Scan(&id, &origin); err != nil {
			return nil, fmt.Errorf("%s: last writers: %w", t.schema.Name, err)
		}
		found++
		if origin != a.device {
			out[id] = origin
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: last writers: %w", t.schema.Name, err)
	}
	if found != len(others) {
		return nil, fmt.Errorf("%s: %d of %d rows to rewrite not found", t.schema.Name, len(others)-found, len(others))
	}
	return out, nil
}

// audit records the rewritten rows in the audit log as this commit left
// them, replacing the entries the commit wrote for its own rows. Past
// fewRows rows of a table, every entry of the commit for the table is
// written again from the table's rows at the commit's version: those the
// commit wrote or rewrote, and an entry of a row the rules did not
// rewrite comes out as it was.
func (w *rewriter) audit(ctx context.Context) error {
	a := w.a
	for _, t := range a.s.tables {
		touched := w.touched[t]
		if len(touched) == 0 {
			continue
		}
		insert := `INSERT INTO _tether_audit (tenant, version, tbl, id, deleted, user_name, device, session, at)
			SELECT ?, ?, ?, "id", "_deleted", ?, ?, "_session", ? FROM ` + t.Name + ` WHERE `
		if len(touched) > fewRows {
			if _, err := a.tx.ExecContext(ctx, a.s.q(`DELETE FROM _tether_audit WHERE tenant = ? AND version = ? AND tbl = ?`),
				a.p.Tenant, w.version, t.schema.Name); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			if _, err := a.tx.ExecContext(ctx, a.s.q(insert+`"_tenant" = ? AND "_version" = ?`),
				a.p.Tenant, w.version, t.schema.Name, a.p.User, a.device, a.at, a.p.Tenant, w.version); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			continue
		}
		ids := slices.Sorted(maps.Keys(touched))
		for chunk := range slices.Chunk(ids, refChunk) {
			var args []any
			entries := rowsOf(&args, `tenant = ? AND version = ? AND tbl = ?`, []any{a.p.Tenant, w.version, t.schema.Name}, chunk)
			if _, err := a.tx.ExecContext(ctx, a.s.d.Rebind(`DELETE FROM _tether_audit WHERE `+entries), args...); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			args = []any{a.p.Tenant, w.version, t.schema.Name, a.p.User, a.device, a.at}
			these := rowsOf(&args, rowKeyTerm, []any{a.p.Tenant}, chunk)
			if _, err := a.tx.ExecContext(ctx, a.s.d.Rebind(insert+these), args...); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
		}
	}
	return nil
}

// report puts the conflicts of the pushed session's rewritten rows in c,
// each replacing any earlier conflict of its row, in the order of the
// rules that rewrote them last, with each row as the commit leaves it.
func (w *rewriter) report(ctx context.Context, c *wire.Commit) error {
	if len(w.reported) == 0 {
		return nil
	}
	keys := make([]rowKey, 0, len(w.reported))
	for k := range w.reported {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y rowKey) int { return cmp.Compare(w.reported[x].seq, w.reported[y].seq) })
	out := make([]wire.Conflict, len(keys))
	at := make(map[rowKey]int, len(keys))
	byTable := map[*Table][]string{}
	for i, k := range keys {
		r := w.reported[k]
		out[i] = wire.Conflict{Table: k.table, ID: k.id, Strategy: wire.StrategyReference, Winner: wire.WinnerServer, Reason: r.why}
		at[k] = i
		byTable[r.t] = append(byTable[r.t], k.id)
	}
	read := 0
	for t, ids := range byTable {
		err := w.read(ctx, t, ids, func(row wire.Row) {
			if i, ok := at[rowKey{t.schema.Name, row.ID}]; ok {
				row.Reason, row.Notify = "", ""
				out[i].Row = row
				read++
			}
		})
		if err != nil {
			return err
		}
	}
	if read != len(out) {
		return fmt.Errorf("%d of %d rewritten rows not found", len(out)-read, len(out))
	}
	c.Conflicts = slices.DeleteFunc(c.Conflicts, func(x wire.Conflict) bool {
		_, ok := w.reported[rowKey{x.Table, x.ID}]
		return ok
	})
	c.Conflicts = append(c.Conflicts, out...)
	return nil
}

// read passes each of the rows ids of t, which this commit rewrote, to
// f, reading refChunk at a time; past fewRows, it passes every row of t at
// the commit's version.
func (w *rewriter) read(ctx context.Context, t *Table, ids []string, f func(wire.Row)) error {
	a := w.a
	size := refChunk
	if len(ids) > fewRows {
		size = len(ids) // one statement
	}
	for chunk := range slices.Chunk(ids, size) {
		q, args := `SELECT `+t.selects+` FROM `+t.Name+` WHERE "_tenant" = ? AND "_version" = ?`, []any{a.p.Tenant, w.version}
		if len(ids) <= fewRows {
			args = nil
			q = `SELECT ` + t.selects + ` FROM ` + t.Name + ` WHERE ` + rowsOf(&args, rowKeyTerm, []any{a.p.Tenant}, chunk)
		}
		rs, err := a.tx.QueryContext(ctx, a.s.d.Rebind(q), args...)
		if err != nil {
			return fmt.Errorf("%s: read rewritten rows: %w", t.schema.Name, err)
		}
		for rs.Next() {
			row, err := scanRow(&t.schema, rs.Scan)
			if err != nil {
				rs.Close()
				return fmt.Errorf("%s: read rewritten rows: %w", t.schema.Name, err)
			}
			f(row)
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return fmt.Errorf("%s: read rewritten rows: %w", t.schema.Name, err)
		}
	}
	return nil
}

// caseOf returns an expression giving each row of ids the text value(id),
// an empty text when empty, and appends its parameters to args.
func caseOf(ids []string, value func(id string) string, args *[]any) string {
	var b strings.Builder
	for _, id := range ids {
		if v := value(id); v != "" {
			if b.Len() == 0 {
				b.WriteString(`CASE "id"`)
			}
			b.WriteString(" WHEN ? THEN ?")
			*args = append(*args, id, v)
		}
	}
	if b.Len() == 0 {
		return "''"
	}
	b.WriteString(" ELSE '' END")
	return b.String()
}

// rowKeyTerm is the condition of a synced table's rows of one tenant,
// for rowsOf.
const rowKeyTerm = `"_tenant" = ?`

// rowsOf returns the condition where, with its parameters fixed, and
// "id" one of ids; it appends the arguments to args. The statements name
// refChunk ids at most (see there).
func rowsOf(args *[]any, where string, fixed []any, ids []string) string {
	*args = append(*args, fixed...)
	for _, id := range ids {
		*args = append(*args, id)
	}
	return where + ` AND "id" IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + ")"
}
