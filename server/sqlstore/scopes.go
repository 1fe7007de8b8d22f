package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Scopes (server.Scopes) are kept in _tether_keys: one entry per row of
// a scoped table and key, at the version the row or its keys last
// changed, and a "gone" entry for a key a row left, at the version it
// left. Every commit brings the entries of the rows it wrote up to date
// (rekey, scopes_commit.go), after checking what the principal may write;
// a pull reads the entries of its principal's keys after its cursor
// (scopes_pull.go). All live entries of a row share one version, the
// latest: a pull that finds any of them after its cursor finds them all.

// scoping is the store's scopes (UseScopes).
type scoping struct {
	sc        *server.Scopes
	authorize server.Authorizer
	tables    map[*Table]*scopedTable
	// sources are the tables that give principals keys (TableKeys):
	// only trusted writes (Server.Write) may write them.
	sources map[*Table]bool
}

// scopedTable is a scoped table and how its rows get their keys.
type scopedTable struct {
	t      *Table
	rk     server.RowKeys
	parent *Table // KeyParent: the referenced table
	col    string // KeyParent: the reference column, unquoted
	// children are the scoped tables that take this one's keys.
	children []*scopedTable
}

// on reports whether the store has scoped tables.
func (sp *scoping) on() bool { return sp.sc != nil && len(sp.tables) > 0 }

// of returns t's scoping, or nil for a table every device sees.
func (sp *scoping) of(t *Table) *scopedTable { return sp.tables[t] }

// UseScopes implements server.Store. It indexes the tables that give a
// principal its keys (TableKeys) by their user column.
func (s *Store) UseScopes(sc *server.Scopes, authorize server.Authorizer) error {
	sp := scoping{sc: sc, authorize: authorize, tables: map[*Table]*scopedTable{}, sources: map[*Table]bool{}}
	if sc != nil && len(sc.Tables) > 0 {
		for name, rk := range sc.Tables {
			t := s.byName[name]
			if t == nil {
				return fmt.Errorf("scopes: table %q is not in the schema", name)
			}
			sp.tables[t] = &scopedTable{t: t, rk: rk}
		}
		for _, st := range sp.tables {
			if col, ok := st.rk.Parent(); ok {
				c, _ := st.t.schema.Column(col)
				parent := sp.tables[s.byName[c.Ref]]
				if parent == nil {
					return fmt.Errorf("scopes: %s: KeyParent(%q): %s is not scoped", st.t.schema.Name, col, c.Ref)
				}
				st.parent, st.col = parent.t, col
				parent.children = append(parent.children, st)
			}
		}
		for _, st := range sp.tables {
			slices.SortFunc(st.children, func(a, b *scopedTable) int { return a.t.idx - b.t.idx })
		}
		var ixs []struct {
			table string
			ix    Index
		}
		for _, src := range sc.Principal {
			if table, user, _, ok := src.Table(); ok {
				if s.byName[table] == nil {
					return fmt.Errorf("scopes: TableKeys: table %q is not in the schema", table)
				}
				sp.sources[s.byName[table]] = true
				ixs = append(ixs, struct {
					table string
					ix    Index
				}{table, Index{Name: table + "__scope_" + user, Columns: []string{"_tenant", user}}})
			}
		}
		if len(ixs) > 0 {
			err := s.inTx(context.Background(), func(_ *sql.Conn, tx *sql.Tx) error {
				for _, x := range ixs {
					have, err := s.d.Indexes(context.Background(), tx, x.table)
					if err != nil {
						return err
					}
					if have[x.ix.Name] {
						continue
					}
					stmt := CreateIndex(x.table, x.ix, false)
					if vi, ok := s.d.(ValueIndexer); ok {
						c, _ := s.byName[x.table].schema.Column(x.ix.Columns[1])
						stmt = vi.ValueIndex(x.table, x.ix.Name, c)
					}
					if _, err := tx.ExecContext(context.Background(), stmt); err != nil {
						return fmt.Errorf("index %s: %w", x.ix.Name, err)
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("scopes: %w", err)
			}
		}
	}
	if err := s.keyAll(context.Background(), &sp); err != nil {
		return fmt.Errorf("scopes: %w", err)
	}
	s.scope = sp
	return nil
}

// principalKeys returns the keys p holds, reading TableKeys sources in tx.
func (s *Store) principalKeys(ctx context.Context, tx *sql.Tx, p server.Principal) ([]string, error) {
	keys, err := s.scope.sc.Principal.Keys(p, func(table, userCol, keyCol string) ([]any, error) {
		t := s.byName[table]
		c, _ := t.schema.Column(keyCol)
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+sqlident.Quote(keyCol)+` FROM `+t.Name+` WHERE "_tenant" = ? AND `+
			sqlident.Quote(userCol)+` = ? AND NOT "_deleted" LIMIT ?`), p.Tenant, p.User, server.MaxPrincipalKeys+1)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []any
		for rows.Next() {
			var raw any
			if err := rows.Scan(&raw); err != nil {
				return nil, err
			}
			v, err := c.Kind.FromDB(raw)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, rows.Err()
	})
	if keys == nil && err == nil {
		keys = []string{} // none, which is not "unknown"
	}
	return keys, err
}

// keySetID is server.KeySetID.
func keySetID(keys []string) string { return server.KeySetID(keys) }

// keyList encodes a set of keys for _tether_devices.
func keyList(keys []string) any {
	if keys == nil {
		return nil
	}
	b, _ := json.Marshal(keys)
	return string(b)
}

// parseKeyList decodes keyList's text; nil for NULL.
func parseKeyList(v sql.NullString) ([]string, error) {
	if !v.Valid {
		return nil, nil
	}
	keys := []string{}
	if err := json.Unmarshal([]byte(v.String), &keys); err != nil {
		return nil, fmt.Errorf("stored scope keys: %w", err)
	}
	return keys, nil
}

// minus returns the keys of a not in b (both sorted).
func minus(a, b []string) []string {
	out := []string{}
	for _, k := range a {
		if _, found := slices.BinarySearch(b, k); !found {
			out = append(out, k)
		}
	}
	return out
}

// shares reports whether sorted key sets a and b share a key.
func shares(a, b []string) bool {
	for _, k := range a {
		if _, found := slices.BinarySearch(b, k); found {
			return true
		}
	}
	return false
}

// inList returns "(?, ?, …)" and its arguments for col IN a set of
// values, or a condition that is false for none. The list is padded to a
// power of two with its last value, so that few statements differ.
func inList(col string, vals []string) (string, []any) {
	if len(vals) == 0 {
		return "1 = 0", nil
	}
	n := 1
	for n < len(vals) {
		n *= 2
	}
	args := make([]any, n)
	for i := range args {
		args[i] = vals[min(i, len(vals)-1)]
	}
	return col + " IN (" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")", args
}

// qualified returns t's row columns (as scanRow reads them) qualified by
// alias.
func qualified(t *Table, alias string) string {
	cols := slices.Clone(t.cols)
	for _, c := range strings.Split(rowCols, ", ") {
		cols = append(cols, c)
	}
	for i := range cols {
		cols[i] = alias + "." + cols[i]
	}
	return strings.Join(cols, ", ")
}

// keyAll computes the keys of every row of the scoped tables, in every
// tenant, when the rules differ from those the entries of _tether_keys
// were computed by (scopes turned on over rows written without them, or
// other rules), and forgets what every device holds: each rebuilds from
// a snapshot at its next pull. It runs in one transaction, under the
// migration lock, so that processes starting at once do it once.
func (s *Store) keyAll(ctx context.Context, sp *scoping) error {
	want := ""
	if sp.on() {
		want = sp.sc.Fingerprint()
	}
	unlock, err := s.d.LockMigrations(ctx, s.w)
	if err != nil {
		return err
	}
	defer unlock()
	return s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		var have string
		err := tx.QueryRowContext(ctx, s.q(`SELECT value FROM _tether_settings WHERE name = ?`), "scopes").Scan(&have)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if have == want {
			return nil
		}
		for _, q := range []string{`DELETE FROM _tether_keys`, `DELETE FROM _tether_settings WHERE name = 'scopes'`,
			`UPDATE _tether_devices SET scope_held = NULL, scope_pending = NULL, scope_extra = NULL, scope_unsure = NULL`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		if want == "" {
			return nil
		}
		for _, t := range s.tables { // parents first: KeyParent reads their keys
			if st := sp.tables[t]; st != nil {
				if err := s.keyTable(ctx, tx, st); err != nil {
					return fmt.Errorf("keys of %s: %w", t.schema.Name, err)
				}
			}
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO _tether_settings (name, value) VALUES (?, ?)`), "scopes", want)
		return err
	})
}

// keyTable writes the entries of every row of st, of every tenant, at
// each row's version.
func (s *Store) keyTable(ctx context.Context, tx *sql.Tx, st *scopedTable) error {
	t := st.t
	tenant, id := "", ""
	for range 1 << 30 { // a chunk at a time, until none is left
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+t.selects+`, "_tenant" FROM `+t.Name+`
			WHERE "_tenant" > ? OR ("_tenant" = ? AND "id" > ?) ORDER BY "_tenant", "id" LIMIT ?`), tenant, tenant, id, keyChunk)
		if err != nil {
			return err
		}
		byTenant := map[string][]wire.Row{}
		var order []string
		n := 0
		for rows.Next() {
			var tn string
			r, err := scanRow(&t.schema, rows.Scan, &tn)
			if err != nil {
				rows.Close()
				return err
			}
			if byTenant[tn] == nil {
				order = append(order, tn)
			}
			byTenant[tn] = append(byTenant[tn], r)
			tenant, id = tn, r.ID
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		for _, tn := range order {
			a := &applier{s: s, tx: tx, p: server.Principal{Tenant: tn}}
			var parents map[string][]string
			if st.parent != nil {
				var pids []string
				for _, r := range byTenant[tn] {
					if v, ok := r.Values[st.col].(string); ok {
						pids = append(pids, v)
					}
				}
				if parents, err = a.liveKeys(ctx, st.parent, pids); err != nil {
					return err
				}
			}
			var entries [][]any
			for _, r := range byTenant[tn] {
				if r.Version == 0 {
					continue // written outside tether, not captured yet: the capture's commit keys it
				}
				for _, k := range rowKeys(st, r, parents) {
					if len(k) <= server.MaxKeyLength { // a longer key is refused at commit; an old row's is dropped
						entries = append(entries, []any{tn, t.schema.Name, r.ID, k, r.Version, false})
					}
				}
			}
			if err := s.insertKeys(ctx, a, entries); err != nil {
				return err
			}
		}
	}
	return nil
}
