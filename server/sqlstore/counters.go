package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

// Counters (entity.Column.Counter). A pushed row's counter columns are
// never written as pushed (present gives them '0'): a new row starts them
// at 0, and each increment the row carries is added once, at the commit
// that first sees its id, which _tether_counted remembers until the
// tenant's purge horizon. A row whose only change is to counters is not a
// conflict for its table's strategy (its "_changed" is "[]"), and keeps
// its other columns and clock stamp. The commit answers with the totals
// its pusher does not hold (wire.Commit.Counted).

// counterOnly is the "_changed" of a staged row that changed only counter
// columns.
const counterOnly = `'[]'`

// notCounterOnly is the condition, on a staged row s and its server row
// t, that the row's change may be a conflict: it is not a change of
// counters alone of a live row.
const notCounterOnly = ` AND NOT (s."_changed" = ` + counterOnly + ` AND NOT s."_deleted" AND NOT t."_deleted")`

// counters returns t's counter columns, with their quoted names.
func (t *Table) counters() (cols []entity.Column, quoted []string) {
	for i, c := range t.schema.Columns {
		if c.Counter {
			cols = append(cols, c)
			quoted = append(quoted, t.cols[i])
		}
	}
	return cols, quoted
}

// isCounter reports whether column name of t is a counter.
func isCounter(t *entity.Table, name string) bool {
	c, ok := t.Column(name)
	return ok && c.Counter
}

// changedNonCounters returns the columns of changed that are not
// counters; never nil.
func changedNonCounters(t *entity.Table, changed []string) []string {
	out := []string{}
	for _, c := range changed {
		if !isCounter(t, c) {
			out = append(out, c)
		}
	}
	return out
}

// incrementsJSON is the "_increments" of a staged row: its increments as
// JSON, or nil for none.
func incrementsJSON(r wire.Row) any {
	if len(r.Increments) == 0 {
		return nil
	}
	b, _ := json.Marshal(r.Increments)
	return string(b)
}

// rowDeltas are the deltas to add to one row: column to sum.
type rowDeltas map[string]int64

// takeIncrements reads the increments of the session's staged rows of t,
// records in _tether_counted, at version, the ids no commit applied
// before, and returns the sums of their deltas by row and column. A row
// whose increments were all applied before is returned with no deltas:
// its pusher is told the total all the same.
func (a *applier) takeIncrements(ctx context.Context, t *Table, version int64) (map[string]rowDeltas, error) {
	cols, _ := t.counters()
	if len(cols) == 0 {
		return nil, nil
	}
	s := a.s
	rows, err := a.tx.QueryContext(ctx, s.q(`SELECT "id", "_increments" FROM (`+s.d.Latest(t)+`) AS s
		WHERE "_increments" IS NOT NULL ORDER BY "id"`), a.p.Tenant, a.session)
	if err != nil {
		return nil, fmt.Errorf("read increments: %w", err)
	}
	byRow := map[string][]wire.Increment{}
	var ids []string
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			rows.Close()
			return nil, err
		}
		var incs []wire.Increment
		if err := json.Unmarshal([]byte(raw), &incs); err != nil {
			rows.Close()
			return nil, fmt.Errorf("staged increments of %q: %w", id, err)
		}
		byRow[id] = incs
		for _, inc := range incs {
			ids = append(ids, inc.ID)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read increments: %w", err)
	}
	counted, err := a.applied(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]rowDeltas, len(byRow))
	for _, id := range slices.Sorted(maps.Keys(byRow)) {
		d := rowDeltas{}
		for _, inc := range byRow[id] {
			if counted[inc.ID] {
				continue
			}
			counted[inc.ID] = true // an id a forged push repeats counts once
			if _, err := a.tx.ExecContext(ctx, s.q(`INSERT INTO _tether_counted (tenant, id, version) VALUES (?, ?, ?)`),
				a.p.Tenant, inc.ID, version); err != nil {
				return nil, fmt.Errorf("record increment %s: %w", inc.ID, err)
			}
			d[inc.Column] += inc.Delta
		}
		out[id] = d
	}
	return out, nil
}

// applied returns which of ids a commit of the tenant applied already,
// reading with locks so that a commit running alongside waits.
func (a *applier) applied(ctx context.Context, ids []string) (map[string]bool, error) {
	seen := map[string]bool{}
	for chunk := range slices.Chunk(ids, 500) {
		marks := strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ")
		args := []any{a.p.Tenant}
		for _, id := range chunk {
			args = append(args, id)
		}
		got, err := a.s.strings(ctx, a.tx, `SELECT id FROM _tether_counted WHERE tenant = ? AND id IN (`+marks+`)`+a.s.d.ForUpdate(), args...)
		if err != nil {
			return nil, fmt.Errorf("read applied increments: %w", err)
		}
		for _, id := range got {
			seen[id] = true
		}
	}
	return seen, nil
}

// addIncrements adds the deltas to the rows of t, which take the
// commit's version: a row whose staged change lost its conflict still
// moves, so that every device pulls its new total.
func (a *applier) addIncrements(ctx context.Context, t *Table, deltas map[string]rowDeltas, version int64) error {
	cols, quoted := t.counters()
	for _, id := range slices.Sorted(maps.Keys(deltas)) {
		d := deltas[id]
		if len(d) == 0 {
			continue
		}
		var sets []string
		var args []any
		for i, c := range cols {
			if n, ok := d[c.Name]; ok {
				sets = append(sets, fmt.Sprintf(`%[1]s = coalesce(%[1]s, 0) + ?`, quoted[i]))
				args = append(args, n)
			}
		}
		args = append(args, version, a.p.Tenant, id)
		if _, err := a.tx.ExecContext(ctx, a.s.q(`UPDATE `+t.Name+` SET `+strings.Join(sets, ", ")+`, "_version" = ? WHERE "_tenant" = ? AND "id" = ?`), args...); err != nil {
			return fmt.Errorf("add increments to %q: %w", id, err)
		}
	}
	return nil
}

// counted appends to c.Counted the rows of t, as they now are, that the
// session's pusher holds otherwise without a conflict to tell it: the rows
// that took increments, whose counters hold another total than pushed, or
// whose change was to counters alone. The device takes each, its counters
// plus the increments it made since it read the row.
func (a *applier) counted(ctx context.Context, t *Table, deltas map[string]rowDeltas, c *wire.Commit) error {
	_, quoted := t.counters()
	if len(quoted) == 0 {
		return nil
	}
	s := a.s
	differs := []string{`s."_changed" = ` + counterOnly}
	for _, q := range quoted {
		differs = append(differs, "t."+q+" <> s."+q)
	}
	ids, err := s.strings(ctx, a.tx, `SELECT s."id" FROM (`+s.d.Latest(t)+`) AS s JOIN `+t.Name+` AS t ON t."_tenant" = ? AND t."id" = s."id"
		WHERE `+strings.Join(differs, " OR ")+` ORDER BY s."id"`, a.p.Tenant, a.session, a.p.Tenant)
	if err != nil {
		return fmt.Errorf("find counted rows: %w", err)
	}
	ids = slices.AppendSeq(ids, maps.Keys(deltas))
	slices.Sort(ids)
	read := s.q(`SELECT ` + t.selects + ` FROM ` + t.Name + ` WHERE "_tenant" = ? AND "id" = ?`)
	for _, id := range slices.Compact(ids) {
		r, err := scanRow(&t.schema, a.tx.QueryRowContext(ctx, read, a.p.Tenant, id).Scan)
		if errors.Is(err, sql.ErrNoRows) {
			continue // a row a scope refused
		}
		if err != nil {
			return fmt.Errorf("read counted row %q: %w", id, err)
		}
		c.Counted = append(c.Counted, r)
	}
	return nil
}

// purgeCounted forgets up to most of the tenant's applied increment ids
// recorded before the horizon, as tombstones are: a device that pushes one
// again after that counts it again.
func (s *Store) purgeCounted(ctx context.Context, tx *sql.Tx, tenant string, horizon int64, most int) (int, error) {
	ids, err := s.strings(ctx, tx, `SELECT id FROM _tether_counted WHERE tenant = ? AND version < ? LIMIT ?`, tenant, horizon, most)
	if err != nil {
		return 0, fmt.Errorf("purge increments: %w", err)
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_counted WHERE tenant = ? AND id = ?`), tenant, id); err != nil {
			return 0, fmt.Errorf("purge increments: %w", err)
		}
	}
	return len(ids), nil
}
