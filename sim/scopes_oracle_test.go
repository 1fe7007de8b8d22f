package sim

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/tethersync/tether/wire"
)

// checkScopes is the oracle of TestScopes, once every device has synced
// twice with no fault:
//
//   - every device holds exactly the rows its person may see, as the
//     server's tables say (its memberships, and the rows' columns), with
//     the server's values, and nothing dirty; Verify agrees;
//   - a device that came back past the purge horizon was rebuilt;
//   - no server row, tombstones included, carries a value of a forbidden
//     write;
//   - every row a device wrote that its person may not write is in its
//     conflict log, strategy "forbidden", the server's winning, with the
//     values it last tried;
//   - no live task references a deleted or missing project, on the
//     server or a device, and no device breaks a foreign key.
func checkScopes(t *testing.T, ctx context.Context, w *scWorld, all []*scDevice) {
	t.Helper()
	srv := w.db().store.DB()
	names := localNames(all)
	for _, d := range all {
		checkHolds(t, ctx, w, srv, d, names)
		rep, err := d.co.Verify(ctx)
		if err != nil {
			t.Errorf("verify %s: %v", d.name, err)
		} else if diff := rep.Differs(); len(diff) > 0 {
			t.Errorf("scopes: Verify of %s (%s) differs from the server in %v", d.name, d.user, diff)
		}
		d.mustMu.Lock()
		if d.mustRebuild != "" {
			t.Errorf("scopes, G13: %s %s, and was never rebuilt", d.name, d.mustRebuild)
		}
		d.mustMu.Unlock()
	}
	checkNotApplied(t, ctx, srv)
	checkVault(t, ctx, srv, w.vault)
	for _, d := range all {
		w.stats.forbidden.Add(int64(checkRefusals(t, ctx, d)))
	}
	checkTaskRefs(t, ctx, srv, all)
}

// visible returns, per table, the live rows of the server that user may
// see: the keys of its principal (user:<user> and team:<team> of its live
// memberships and of its token's claims) against the rows' keys.
func visible(ctx context.Context, srv *sql.DB, user string) (map[string]map[string]string, []string, error) {
	teams, err := strings0(ctx, srv, `SELECT DISTINCT team_id FROM memberships WHERE _tenant = 'sim' AND _deleted = 0 AND user_id = ? ORDER BY team_id`, user)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range claimTeams[user] {
		if team := c.(string); !slices.Contains(teams, team) {
			teams = append(teams, team)
		}
	}
	users := []string{user}
	in := func(vals []string) (string, []any) {
		if len(vals) == 0 {
			return "NULL", nil
		}
		args := make([]any, len(vals))
		for i, v := range vals {
			args[i] = v
		}
		return strings.TrimSuffix(strings.Repeat("?, ", len(vals)), ", "), args
	}
	tq, targs := in(teams)
	uq, uargs := in(users)
	where := map[string]struct {
		cond string
		args []any
	}{
		"teams":       {"", nil},
		"board":       {"", nil},
		"projects":    {"team_id IN (" + tq + ")", targs},
		"tasks":       {"project_id IN (SELECT p.id FROM projects AS p WHERE p._tenant = r._tenant AND p.team_id IN (" + tq + "))", targs},
		"notes":       {"owner_id IN (" + uq + ")", uargs},
		"memberships": {"user_id IN (" + uq + ")", uargs},
	}
	out := map[string]map[string]string{}
	for _, table := range scTables {
		rows, err := scRows(ctx, srv, table, "sim", where[table].cond, where[table].args...)
		if err != nil {
			return nil, nil, err
		}
		out[table] = rows
	}
	return out, teams, nil
}

// checkHolds compares the rows d holds with those its person may see.
func checkHolds(t *testing.T, ctx context.Context, w *scWorld, srv *sql.DB, d *scDevice, names map[string]string) {
	t.Helper()
	want, teams, err := visible(ctx, srv, d.user)
	if err != nil {
		t.Fatalf("what %s may see: %v", d.name, err)
	}
	explained := 0
	why := func(table, id string) {
		if explained++; explained <= 3 {
			explain(t, ctx, srv, d, names, table, id)
		}
	}
	reported := 0
	report := func(format string, args ...any) {
		if reported++; reported <= 12 {
			t.Errorf("scopes: %s (%s, teams %v): "+format, append([]any{d.name, d.user, teams}, args...)...)
		}
	}
	var missing, extra, differ int
	for _, table := range scTables {
		got, err := scRows(ctx, d.db.SQL(), table, "", "")
		if err != nil {
			t.Fatalf("rows of %s: %v", d.name, err)
		}
		for _, id := range slices.Sorted(maps.Keys(want[table])) {
			g, ok := got[id]
			switch {
			case !ok:
				missing++
				report("%s %s (%s), which it may see, is missing%s", table, id, want[table][id], d.localState(ctx, table, id))
				why(table, id)
			case g != want[table][id]:
				differ++
				report("%s %s holds %s, the server %s", table, id, g, want[table][id])
				why(table, id)
			}
		}
		for _, id := range slices.Sorted(maps.Keys(got)) {
			if _, ok := want[table][id]; ok {
				continue
			}
			extra++
			report("%s %s (%s), which it may not see, is on the device (on the server: %s)", table, id, got[id], serverState(ctx, srv, table, id))
			why(table, id)
		}
		// A tombstone keeps the row's values: one of a row live on the
		// server that the device may not see, at a version the server
		// never deleted it at, is a row it should no longer hold. (One at
		// a version the server deleted it at is what it saw deleted, while
		// it could see it, of a row created again since: counted.)
		tombs, err := tuples(ctx, d.db.SQL(), fmt.Sprintf(`SELECT id, _version FROM %s WHERE _deleted != 0 ORDER BY id`, table))
		if err != nil {
			t.Fatalf("tombstones of %s: %v", d.name, err)
		}
		for _, tomb := range tombs {
			id := tomb[0]
			if _, ok := want[table][id]; ok {
				continue // reported missing above
			}
			var live, deletedThen int
			srv.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE _tenant = 'sim' AND _deleted = 0 AND id = ?`, table), id).Scan(&live)
			if live == 0 {
				continue
			}
			srv.QueryRowContext(ctx, `SELECT count(*) FROM sim_history WHERE tbl = ? AND id = ? AND version = ? AND deleted != 0`, table, id, tomb[1]).Scan(&deletedThen)
			if deletedThen > 0 {
				w.stats.staleTombs.Add(1)
				continue
			}
			extra++
			report("%s %s, live on the server and which it may not see, is on the device as a tombstone (values included) at version %s, where the server never deleted it", table, id, tomb[1])
			why(table, id)
		}
		var dirty int
		if err := d.db.SQL().QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE _dirty != 0`, table)).Scan(&dirty); err == nil && dirty > 0 {
			report("%d rows of %s still dirty after two syncs", dirty, table)
		}
	}
	if reported > 12 {
		t.Errorf("scopes: %s: %d rows missing, %d it may not see, %d differing", d.name, missing, extra, differ)
	}
}

// localState says what d holds of a row it lacks live: a tombstone?
func (d *scDevice) localState(ctx context.Context, table, id string) string {
	var deleted, dirty int
	err := d.db.SQL().QueryRowContext(ctx, fmt.Sprintf(`SELECT _deleted, _dirty FROM %s WHERE id = ?`, table), id).Scan(&deleted, &dirty)
	if err != nil {
		return ""
	}
	return fmt.Sprintf(" (the device holds a tombstone, dirty %d)", dirty)
}

// serverState describes a row on the server.
func serverState(ctx context.Context, srv *sql.DB, table, id string) string {
	var deleted int
	var version int64
	err := srv.QueryRowContext(ctx, fmt.Sprintf(`SELECT _deleted, _version FROM %s WHERE _tenant = 'sim' AND id = ?`, table), id).Scan(&deleted, &version)
	if err != nil {
		return "absent"
	}
	rows, _ := scRows(ctx, srv, table, "sim", "id = ?", id)
	if deleted != 0 {
		return fmt.Sprintf("a tombstone at version %d", version)
	}
	return fmt.Sprintf("live at version %d: %s", version, rows[id])
}

// checkNotApplied checks that no server row, tombstones included, carries
// a value a device wrote where it may not write.
func checkNotApplied(t *testing.T, ctx context.Context, srv *sql.DB) {
	t.Helper()
	for _, table := range scTables {
		var conds []string
		for _, c := range scCols[table] {
			conds = append(conds, c+" LIKE '"+forbiddenMark+"%'")
		}
		q := fmt.Sprintf(`SELECT id, _deleted FROM %s WHERE _tenant = 'sim' AND (%s) ORDER BY id LIMIT 10`, table, strings.Join(conds, " OR "))
		rows, err := tuples(ctx, srv, q)
		if err != nil {
			t.Fatalf("forbidden values in %s: %v", table, err)
		}
		for _, r := range rows {
			vals, _ := scRows(ctx, srv, table, "sim", "id = ?", r[0])
			t.Errorf("scopes: a refused write was applied: server %s %s (deleted %s) holds %s", table, r[0], r[1], vals[r[0]])
		}
	}
}

// checkVault checks that the vault's projects, which only the back office
// writes (once), are as it wrote them: no device's write to them, deletes
// included, was applied.
func checkVault(t *testing.T, ctx context.Context, srv *sql.DB, vault []string) {
	t.Helper()
	live, err := scRows(ctx, srv, "projects", "sim", "team_id = ?", vaultTeam)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range vault {
		if want := vaultTeam + "|" + id; live[id] != want {
			t.Errorf("scopes: a refused write was applied: vault project %s is %s on the server, want live %s", id, serverState(ctx, srv, "projects", id), want)
		}
	}
}

// checkRefusals checks that every row d wrote where its person may not
// write is in its conflict log, refused. It returns the number of
// forbidden entries in the log.
func checkRefusals(t *testing.T, ctx context.Context, d *scDevice) int {
	t.Helper()
	log, err := d.db.Conflicts(ctx)
	if err != nil {
		t.Fatalf("conflicts of %s: %v", d.name, err)
		return 0
	}
	type rowKey struct{ table, id string }
	logged := map[rowKey][]string{} // the markers in the forbidden entries' local values
	for _, c := range log {
		if c.Strategy != wire.StrategyForbidden {
			continue
		}
		if c.Winner != wire.WinnerServer {
			t.Errorf("scopes: %s: forbidden conflict on %s %s won by %q, want the server", d.name, c.Table, c.RowID, c.Winner)
		}
		if c.Reason == "" {
			t.Errorf("scopes: %s: forbidden conflict on %s %s without a reason", d.name, c.Table, c.RowID)
		}
		k := rowKey{c.Table, c.RowID}
		logged[k] = append(logged[k], markerOf(c.Local.Values))
	}
	last := map[rowKey]attempt{}
	tried := map[rowKey]map[string]bool{}
	for _, a := range d.attempts {
		k := rowKey{a.table, a.id}
		last[k] = a
		if tried[k] == nil {
			tried[k] = map[string]bool{}
		}
		tried[k][a.marker] = true
	}
	errs := 0
	for _, k := range slices.SortedFunc(maps.Keys(last), func(a, b rowKey) int { return strings.Compare(a.table+a.id, b.table+b.id) }) {
		a := last[k]
		got := logged[k]
		switch {
		case len(got) == 0:
			errs++
			if errs <= 10 {
				t.Errorf("scopes: %s wrote %s (%s %s, %s), refused, and its conflict log has no forbidden entry for it", d.name, a.what, a.table, a.id, a.marker)
			}
		case !slices.Contains(got, a.marker):
			errs++
			if errs <= 10 {
				t.Errorf("scopes: %s wrote %s (%s %s, %s): its forbidden entries hold %q, not the values it last tried", d.name, a.what, a.table, a.id, a.marker, got)
			}
		}
		for _, m := range got {
			if m != "" && !tried[k][m] {
				t.Errorf("scopes: %s: a forbidden entry of %s %s holds %s, which it never wrote to that row", d.name, k.table, k.id, m)
			}
		}
	}
	if errs > 10 {
		t.Errorf("scopes: %s: %d refused rows missing from the conflict log", d.name, errs)
	}
	n := 0
	for _, ms := range logged {
		n += len(ms)
	}
	return n
}

// markerOf returns the forbidden marker among values, or "".
func markerOf(values map[string]any) string {
	for _, v := range values {
		if s, ok := v.(string); ok && strings.HasPrefix(s, forbiddenMark) {
			return s
		}
	}
	return ""
}

// checkTaskRefs checks references: no live task references a deleted or
// missing project on the server or a device (G12), and no device breaks
// a foreign key (G4).
func checkTaskRefs(t *testing.T, ctx context.Context, srv *sql.DB, all []*scDevice) {
	t.Helper()
	const q = `SELECT c.id FROM tasks AS c LEFT JOIN projects AS p ON p.id = c.project_id%s
		WHERE c._deleted = 0 AND coalesce(p._deleted, 1) != 0%s ORDER BY c.id LIMIT 5`
	bad, err := strings0(ctx, srv, fmt.Sprintf(q, ` AND p._tenant = c._tenant`, ` AND c._tenant = 'sim'`))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range bad {
		t.Errorf("G12: on the server, live task %s references a deleted or missing project", id)
	}
	for _, d := range all {
		bad, err := strings0(ctx, d.db.SQL(), fmt.Sprintf(q, "", ""))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range bad {
			t.Errorf("G12: on %s, live task %s references a deleted or missing project", d.name, id)
		}
		var n int
		if err := d.db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM pragma_foreign_key_check`).Scan(&n); err != nil || n > 0 {
			t.Errorf("G4: %s has %d foreign key violations (%v)", d.name, n, err)
		}
	}
}
