package sim

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
)

// What the oracle of TestScopes prints to explain a row a device holds
// wrongly: the row's history on the server, as triggers installed in
// the server's database record every version of every row (values
// included, which the audit log does not keep), and what the device
// holds of it and logged.

// recordHistory installs, in the server's database, the triggers that
// record each version of the rows of the scoped schema in sim_history.
func recordHistory(ctx context.Context, db *sql.DB) error {
	qs := []string{`CREATE TABLE IF NOT EXISTS sim_history (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, id TEXT NOT NULL,
		version INTEGER NOT NULL, deleted INTEGER NOT NULL, vals TEXT NOT NULL, op TEXT NOT NULL)`}
	for _, table := range scTables {
		vals := func(row string) string {
			var parts []string
			for _, c := range scCols[table] {
				parts = append(parts, fmt.Sprintf("coalesce(%s.%s, 'NULL')", row, c))
			}
			return strings.Join(parts, " || '|' || ")
		}
		for _, op := range []string{"INSERT", "UPDATE", "DELETE"} {
			row := "NEW"
			if op == "DELETE" {
				row = "OLD"
			}
			qs = append(qs, fmt.Sprintf(`CREATE TRIGGER IF NOT EXISTS sim_history_%[1]s_%[2]s AFTER %[2]s ON %[1]s WHEN %[3]s._tenant = 'sim'
				BEGIN INSERT INTO sim_history (tbl, id, version, deleted, vals, op) VALUES ('%[1]s', %[3]s.id, %[3]s._version, %[3]s._deleted, %[4]s, '%[2]s'); END`,
				table, op, row, vals(row)))
		}
	}
	for _, q := range qs {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("record history: %w", err)
		}
	}
	return nil
}

// explain logs the history of table's row id on the server, of its
// project for a task, of the memberships of d's person, and what d holds
// and logged of it.
func explain(t *testing.T, ctx context.Context, srv *sql.DB, d *scDevice, names map[string]string, table, id string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "explain %s %s on %s (device id %s):\n", table, id, d.name, d.db.DeviceID())
	history := func(table, id string) {
		rows, err := tuples(ctx, srv, `SELECT h.version, h.deleted, h.vals, h.op, coalesce(a.user_name, ''), coalesce(a.device, '')
			FROM sim_history AS h LEFT JOIN _tether_audit AS a ON a.tenant = 'sim' AND a.version = h.version AND a.tbl = h.tbl AND a.id = h.id
			WHERE h.tbl = ? AND h.id = ? ORDER BY h.seq`, table, id)
		if err != nil {
			fmt.Fprintf(&b, "  history of %s %s: %v\n", table, id, err)
			return
		}
		for _, r := range rows {
			who := names[r[5]]
			if who == "" {
				who = r[5]
			}
			fmt.Fprintf(&b, "  server %s %s: version %s deleted %s [%s] (%s by %s on %s)\n", table, id, r[0], r[1], r[2], r[3], r[4], who)
		}
		keys, _ := tuples(ctx, srv, `SELECT scope_key, version, gone FROM _tether_keys WHERE tenant = 'sim' AND tbl = ? AND id = ? ORDER BY scope_key`, table, id)
		for _, k := range keys {
			fmt.Fprintf(&b, "  server keys of %s %s: %s at version %s, gone %s\n", table, id, k[0], k[1], k[2])
		}
	}
	history(table, id)
	ids := []string{id}
	if table == "tasks" {
		var project string
		if err := srv.QueryRowContext(ctx, `SELECT project_id FROM tasks WHERE _tenant = 'sim' AND id = ?`, id).Scan(&project); err == nil {
			history("projects", project)
			ids = append(ids, project)
		}
	}
	for _, e := range d.log.about(ids...) {
		fmt.Fprintf(&b, "  %s received: %s\n", d.name, e)
	}
	ms, _ := tuples(ctx, srv, `SELECT h.version, h.deleted, h.vals FROM sim_history AS h WHERE h.tbl = 'memberships' AND h.vals LIKE ? ORDER BY h.seq`, d.user+"|%")
	for _, m := range ms {
		fmt.Fprintf(&b, "  server membership of %s: version %s deleted %s [%s]\n", d.user, m[0], m[1], m[2])
	}
	local, err := tuples(ctx, d.db.SQL(), fmt.Sprintf(`SELECT _version, _deleted, _dirty, _hlc FROM %s WHERE id = ?`, table), id)
	fmt.Fprintf(&b, "  on %s: version, deleted, dirty, stamp %v (%v)\n", d.name, local, err)
	cur, _ := d.db.Syncer().Cursor(ctx)
	fmt.Fprintf(&b, "  %s's cursor %s, rebuilt %d times\n", d.name, cur, d.rebuilds.Load())
	log, _ := d.db.Conflicts(ctx)
	for _, c := range log {
		if c.Table == table && c.RowID == id {
			fmt.Fprintf(&b, "  conflict log: %s, winner %s, reason %q, local %+v, winning %+v\n", c.Strategy, c.Winner, c.Reason, c.Local, c.Winning)
		}
	}
	t.Log(b.String())
}

// localNames maps device ids to the names of the devices.
func localNames(all []*scDevice) map[string]string {
	out := map[string]string{}
	for _, d := range all {
		out[d.db.DeviceID()] = d.name
	}
	return out
}

// orphans describes the rows of d that reference a row it does not hold,
// and returns the first such task.
func (d *scDevice) orphans(ctx context.Context) (string, string) {
	rows, err := tuples(ctx, d.db.SQL(), `SELECT k."table", coalesce(c.id, ''), coalesce(c.project_id, ''), coalesce(c._deleted, ''), coalesce(c._dirty, ''), coalesce(c._version, '')
		FROM pragma_foreign_key_check AS k LEFT JOIN tasks AS c ON k."table" = 'tasks' AND c.rowid = k.rowid LIMIT 5`)
	if err != nil {
		return fmt.Sprintf("foreign key check: %v", err), ""
	}
	first := ""
	if len(rows) > 0 {
		first = rows[0][1]
	}
	return fmt.Sprintf("rows referencing a missing row (table, id, project, deleted, dirty, version): %v", rows), first
}
