package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// keyChunk is the number of rows whose keys one statement reads or
// writes.
const keyChunk = 200

// guard checks the staged rows of t against what the principal may write
// (its scope keys, then Authorize), before they are applied: a refused row
// is dropped from the stage and reported as a conflict of strategy
// wire.StrategyForbidden, with the server's row (or an Evict row, when
// the principal may not see it, or there is none).
func (a *applier) guard(ctx context.Context, t *Table, c *wire.Commit) error {
	s := a.s
	st := s.scope.of(t)
	if server.IsTrusted(ctx) || (st == nil && s.scope.authorize == nil && !s.scope.sources[t]) {
		return nil
	}
	rows, err := a.tx.QueryContext(ctx, s.q(`SELECT `+t.columnList()+`, "_base", "_deleted", "_hlc", "_changed", "_present" FROM (`+
		s.d.Latest(t)+`) AS s ORDER BY "id"`), a.p.Tenant, a.session)
	if err != nil {
		return fmt.Errorf("read staged rows: %w", err)
	}
	var staged []wire.Row
	for rows.Next() {
		r, err := scanStaged(&t.schema, rows.Scan)
		if err != nil {
			rows.Close()
			return err
		}
		staged = append(staged, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var mine []string
	if st != nil {
		if mine, err = a.keys(ctx); err != nil {
			return err
		}
	}
	for chunk := range slices.Chunk(staged, keyChunk) {
		ids := make([]string, len(chunk))
		for i, r := range chunk {
			ids[i] = r.ID
		}
		cur, err := a.readRows(ctx, t, ids)
		if err != nil {
			return err
		}
		var old, parents map[string][]string
		if st != nil {
			if old, err = a.liveKeys(ctx, t, ids); err != nil {
				return err
			}
			if st.parent != nil {
				var pids []string
				for _, r := range chunk {
					if v, ok := a.after(t, cur[r.ID], r).Values[st.col].(string); ok {
						pids = append(pids, v)
					}
				}
				if parents, err = a.liveKeys(ctx, st.parent, pids); err != nil {
					return err
				}
			}
		}
		for _, r := range chunk {
			reason, err := a.refuse(ctx, t, st, mine, cur[r.ID], r, old[r.ID], parents)
			if err != nil {
				return fmt.Errorf("%q: %w", r.ID, err)
			}
			if reason == "" {
				continue
			}
			cf := wire.Conflict{Table: t.schema.Name, ID: r.ID, Strategy: wire.StrategyForbidden, Winner: wire.WinnerServer,
				PushedHLC: r.HLC, Reason: reason, Row: wire.Row{Table: t.schema.Name, ID: r.ID, Evict: true}}
			if srv := cur[r.ID]; srv != nil && (st == nil || shares(old[r.ID], mine)) {
				cf.Row = *srv // the principal sees it: the device's copy returns to it
			}
			c.Conflicts = append(c.Conflicts, cf)
			if _, err := a.tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ? AND "id" = ?`),
				a.p.Tenant, a.session, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// refuse returns why the principal may not write staged row r of t over
// the server's row cur (nil for none), or "" when it may: oldKeys are
// cur's keys, parents the keys of the rows a KeyParent column names, mine
// the principal's.
func (a *applier) refuse(ctx context.Context, t *Table, st *scopedTable, mine []string, cur *wire.Row, r wire.Row, oldKeys []string, parents map[string][]string) (string, error) {
	name := t.schema.Name
	next := a.after(t, cur, r)
	if a.s.scope.sources[t] {
		// A member who wrote these would give itself keys.
		return fmt.Sprintf("%s rows give scope keys: only the server's trusted writes (Server.Write) may write them", name), nil
	}
	if st != nil && !(cur == nil && r.Deleted) { // a row deleted before the server had it: nothing to guard
		newKeys := oldKeys
		if !r.Deleted {
			newKeys = rowKeys(st, next, parents)
		}
		for _, k := range newKeys {
			if len(k) > server.MaxKeyLength {
				return fmt.Sprintf("its scope key %.40q… is longer than %d bytes", k, server.MaxKeyLength), nil
			}
		}
		switch {
		case cur == nil && !shares(newKeys, mine):
			return fmt.Sprintf("you may not create this %s row: it is not in a scope you hold", name), nil
		case cur != nil && !shares(oldKeys, mine):
			return fmt.Sprintf("you may not change this %s row: it is not in a scope you hold", name), nil
		case cur != nil && !shares(newKeys, mine):
			return fmt.Sprintf("you may not move this %s row out of the scopes you hold", name), nil
		}
	}
	if a.s.scope.authorize == nil {
		return "", nil
	}
	var old *wire.Row
	if cur != nil {
		o := *cur
		o.Values = maps.Clone(cur.Values)
		old = &o
	}
	err := a.s.scope.authorize(ctx, a.p, name, old, &next)
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, server.ErrForbidden):
		return err.Error(), nil
	}
	return "", fmt.Errorf("authorize: %w", err)
}

// after returns staged row r as it would stand once applied over cur: the
// columns it holds, and cur's (or NULL) for the others.
func (a *applier) after(t *Table, cur *wire.Row, r wire.Row) wire.Row {
	next := wire.Row{Table: t.schema.Name, ID: r.ID, Deleted: r.Deleted, HLC: r.HLC, Device: a.device, ModifiedBy: a.p.User,
		Values: make(map[string]any, len(t.schema.Columns)-1)}
	for _, c := range t.schema.Columns[1:] {
		v, ok := r.Values[c.Name]
		if !ok && cur != nil {
			v = cur.Values[c.Name]
		}
		next.Values[c.Name] = v
	}
	return next
}

// rowKeys computes the keys of row r of a scoped table: parents holds the
// keys of the rows a KeyParent column may name.
func rowKeys(st *scopedTable, r wire.Row, parents map[string][]string) []string {
	if st.parent != nil {
		id, _ := r.Values[st.col].(string)
		return parents[id]
	}
	values := maps.Clone(r.Values)
	values["id"] = r.ID
	return st.rk.Keys(values)
}

// keys returns the principal's keys, read once per commit.
func (a *applier) keys(ctx context.Context) ([]string, error) {
	if a.mine == nil {
		keys, err := a.s.principalKeys(ctx, a.tx, a.p)
		if err != nil {
			return nil, err
		}
		a.mine = append([]string{}, keys...)
	}
	return a.mine, nil
}

// readRows reads the server's rows of t with the given ids.
func (a *applier) readRows(ctx context.Context, t *Table, ids []string) (map[string]*wire.Row, error) {
	out := map[string]*wire.Row{}
	if len(ids) == 0 {
		return out, nil
	}
	in, args := inList(`"id"`, ids)
	rows, err := a.tx.QueryContext(ctx, a.s.q(`SELECT `+t.selects+` FROM `+t.Name+` WHERE "_tenant" = ? AND `+in),
		append([]any{a.p.Tenant}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("read server rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRow(&t.schema, rows.Scan)
		if err != nil {
			return nil, err
		}
		out[r.ID] = &r
	}
	return out, rows.Err()
}

// liveKeys returns the keys the rows of t with the given ids carry now.
func (a *applier) liveKeys(ctx context.Context, t *Table, ids []string) (map[string][]string, error) {
	entries, err := a.entries(ctx, t, ids)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for id, es := range entries {
		for _, e := range es {
			if !e.gone {
				out[id] = append(out[id], e.key)
			}
		}
	}
	return out, nil
}

// entry is an entry of _tether_keys.
type entry struct {
	key     string
	version int64
	gone    bool
}

// entries returns the entries of the rows of t with the given ids, by id,
// keys in order.
func (a *applier) entries(ctx context.Context, t *Table, ids []string) (map[string][]entry, error) {
	out := map[string][]entry{}
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	for chunk := range slices.Chunk(ids, keyChunk) {
		in, args := inList("id", chunk)
		rows, err := a.tx.QueryContext(ctx, a.s.q(`SELECT id, scope_key, version, gone FROM _tether_keys WHERE tenant = ? AND tbl = ? AND `+in+
			` ORDER BY id, scope_key`), append([]any{a.p.Tenant, t.schema.Name}, args...)...)
		if err != nil {
			return nil, fmt.Errorf("read scope keys: %w", err)
		}
		for rows.Next() {
			var id string
			var e entry
			var gone any
			if err := rows.Scan(&id, &e.key, &e.version, &gone); err != nil {
				rows.Close()
				return nil, err
			}
			e.gone = truth(gone)
			out[id] = append(out[id], e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// rekeyVersion brings the keys of t's rows written at the commit's version
// up to date.
func (a *applier) rekeyVersion(ctx context.Context, t *Table, version int64) error {
	st := a.s.scope.of(t)
	if st == nil {
		return nil
	}
	ids, err := a.s.strings(ctx, a.tx, `SELECT "id" FROM `+t.Name+` WHERE "_tenant" = ? AND "_version" = ?`, a.p.Tenant, version)
	if err != nil {
		return fmt.Errorf("rekey: %w", err)
	}
	return a.rekey(ctx, st, ids, version)
}

// rekey brings the entries of the rows of st with the given ids up to
// date at version: every key the row carries now, at version; a gone
// entry, at version, for each key it left; a deleted row keeps the keys it
// had, so that its tombstone reaches the devices that held it. When a
// row's keys change, the rows that take its keys (KeyParent) follow.
func (a *applier) rekey(ctx context.Context, st *scopedTable, ids []string, version int64) error {
	t := st.t
	moved := []string{} // rows whose keys changed
	for chunk := range slices.Chunk(ids, keyChunk) {
		cur, err := a.readRows(ctx, t, chunk)
		if err != nil {
			return err
		}
		old, err := a.entries(ctx, t, chunk)
		if err != nil {
			return err
		}
		var parents map[string][]string
		if st.parent != nil {
			var pids []string
			for _, r := range cur {
				if v, ok := r.Values[st.col].(string); ok {
					pids = append(pids, v)
				}
			}
			if parents, err = a.liveKeys(ctx, st.parent, pids); err != nil {
				return err
			}
		}
		var rows [][]any
		var gone []string
		for _, id := range chunk {
			r := cur[id]
			if r == nil {
				continue
			}
			var was []string
			for _, e := range old[id] {
				if !e.gone {
					was = append(was, e.key)
				}
			}
			now := was
			if !r.Deleted || len(was) == 0 {
				now = rowKeys(st, *r, parents)
			}
			for _, k := range now {
				if len(k) > server.MaxKeyLength {
					return fmt.Errorf("%s %q: scope key %.40q… is longer than %d bytes: %w", t.schema.Name, id, k, server.MaxKeyLength, wire.ErrBadRequest)
				}
				rows = append(rows, []any{a.p.Tenant, t.schema.Name, id, k, version, false})
			}
			for _, e := range old[id] {
				if _, in := slices.BinarySearch(now, e.key); in {
					continue
				}
				if !e.gone {
					e.version = version // it leaves the key now
				}
				rows = append(rows, []any{a.p.Tenant, t.schema.Name, id, e.key, e.version, true})
			}
			if !slices.Equal(now, was) {
				moved = append(moved, id)
			}
			gone = append(gone, id)
		}
		if len(gone) > 0 {
			in, args := inList("id", gone)
			if _, err := a.tx.ExecContext(ctx, a.s.q(`DELETE FROM _tether_keys WHERE tenant = ? AND tbl = ? AND `+in),
				append([]any{a.p.Tenant, t.schema.Name}, args...)...); err != nil {
				return fmt.Errorf("rekey %s: %w", t.schema.Name, err)
			}
		}
		if err := a.s.insertKeys(ctx, a, rows); err != nil {
			return fmt.Errorf("rekey %s: %w", t.schema.Name, err)
		}
	}
	// The rows that take these rows' keys follow them.
	for _, child := range st.children {
		for chunk := range slices.Chunk(moved, keyChunk) {
			in, args := inList(sqlident.Quote(child.col), chunk)
			kids, err := a.s.strings(ctx, a.tx, `SELECT "id" FROM `+child.t.Name+` WHERE "_tenant" = ? AND `+in, append([]any{a.p.Tenant}, args...)...)
			if err != nil {
				return fmt.Errorf("rekey %s: %w", child.t.schema.Name, err)
			}
			if err := a.rekey(ctx, child, kids, version); err != nil {
				return err
			}
		}
	}
	return nil
}

// insertKeys writes entries of _tether_keys, a chunk per statement.
func (s *Store) insertKeys(ctx context.Context, a *applier, rows [][]any) error {
	const per = 64
	for chunk := range slices.Chunk(rows, per) {
		args := make([]any, 0, 6*len(chunk))
		for _, r := range chunk {
			args = append(args, r...)
		}
		q := `INSERT INTO _tether_keys (tenant, tbl, id, scope_key, version, gone) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", len(chunk)), ", ")
		if _, err := a.tx.ExecContext(ctx, s.q(q), args...); err != nil {
			return err
		}
	}
	return nil
}

// truth reads a boolean as each driver returns it.
func truth(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	case []byte:
		return len(x) > 0 && x[0] != '0'
	case string:
		return x != "" && x != "0" && x != "f" && x != "false"
	}
	return false
}
