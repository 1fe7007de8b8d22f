package localdb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
)

// Bookkeeping columns of every synced table. They start with an underscore,
// which entity column names cannot.
//
//	_dirty        1 while the row has changes the server has not acknowledged
//	_deleted      1 for a tombstone
//	_version      server version the row was last synced at
//	_hlc          clock stamp of the last change ('' for a raw SQL write not yet stamped)
//	_change       local change counter, bumped by every local write (G2)
//	_modified_at  wall time of the last change
//	_modified_by  user of the last change the server accepted
//	_changed      columns changed since the last sync, as ",a,b"; '*' for all (a new row)
const bookkeepingDDL = `"_changed" TEXT NOT NULL DEFAULT '',
	"_dirty" INTEGER NOT NULL DEFAULT 1,
	"_deleted" INTEGER NOT NULL DEFAULT 0,
	"_version" INTEGER NOT NULL DEFAULT 0,
	"_hlc" TEXT NOT NULL DEFAULT '',
	"_change" INTEGER NOT NULL DEFAULT 0,
	"_modified_at" TEXT NOT NULL DEFAULT '',
	"_modified_by" TEXT NOT NULL DEFAULT '',
	"_stale" INTEGER NOT NULL DEFAULT 0`

// metaCols are read after the entity columns by every select.
const metaCols = `"_dirty", "_deleted", "_version", "_hlc", "_modified_at", "_modified_by"`

// table holds the SQL of one synced table.
type table struct {
	ent  *entity.Entity
	name string
	cols []entity.Column // entity.Table.Columns; cols[0] is id

	selectCols string // entity columns then metaCols
	countDirty string
	upsertSave string
	upsertPull string // unconditional: a conflict's winner
	// applyHead and applyTail frame the multi-row insert of pulled rows,
	// which skips dirty rows and rows at the same or a later version.
	applyHead, applyTail string
	snapshotTail         string // applyHead's tail for rows of a snapshot
}

func newTable(e *entity.Entity) *table {
	t := &table{ent: e, name: e.Table.Name, cols: e.Table.Columns}
	names := make([]string, len(t.cols))
	params := make([]string, len(t.cols))
	var sets []string
	for i, c := range t.cols {
		names[i] = sqlident.Quote(c.Name)
		params[i] = "?"
		if i > 0 {
			sets = append(sets, fmt.Sprintf("%s = excluded.%s", names[i], names[i]))
		}
	}
	q := sqlident.Quote(t.name)
	t.selectCols = strings.Join(names, ", ") + ", " + metaCols
	t.countDirty = fmt.Sprintf(`SELECT count(*) FROM %s WHERE "_dirty" = 1`, q)
	set := strings.Join(append(sets, ""), ", ")
	// _changed gathers, from the first edit after a sync on, the columns
	// whose value an edit changed (SET expressions see the old row).
	t.upsertSave = fmt.Sprintf(`INSERT INTO %s (%s, "_dirty", "_deleted", "_change", "_hlc", "_modified_at", "_changed")
		VALUES (%s, 1, 0, ?, ?, ?, '*')
		ON CONFLICT ("id") DO UPDATE SET %s "_dirty" = 1, "_deleted" = 0,
		"_change" = excluded."_change", "_hlc" = excluded."_hlc", "_modified_at" = excluded."_modified_at",
		"_changed" = %s
		RETURNING "_version", "_modified_by"`,
		q, strings.Join(names, ", "), strings.Join(params, ", "), set, t.changedExpr(q, "excluded"))
	t.upsertPull = fmt.Sprintf(`INSERT INTO %s (%s, "_dirty", "_deleted", "_version", "_hlc", "_modified_at", "_modified_by")
		VALUES (%s, 0, ?, ?, ?, ?, ?)
		ON CONFLICT ("id") DO UPDATE SET %s "_dirty" = 0, "_deleted" = excluded."_deleted",
		"_version" = excluded."_version", "_hlc" = excluded."_hlc",
		"_modified_at" = excluded."_modified_at", "_modified_by" = excluded."_modified_by"`,
		q, strings.Join(names, ", "), strings.Join(params, ", "), set)
	t.applyHead = fmt.Sprintf(`INSERT INTO %s (%s, "_dirty", "_deleted", "_version", "_hlc", "_modified_at", "_modified_by")`,
		q, strings.Join(names, ", "))
	// A snapshot row replaces the clean row whatever its version, and
	// marks it seen (see BeginRebuild).
	t.snapshotTail = fmt.Sprintf(`ON CONFLICT ("id") DO UPDATE SET %s "_dirty" = 0, "_deleted" = excluded."_deleted",
		"_version" = excluded."_version", "_hlc" = excluded."_hlc",
		"_modified_at" = excluded."_modified_at", "_modified_by" = excluded."_modified_by", "_changed" = '', "_stale" = 0
		WHERE "_dirty" = 0`, set)
	t.applyTail = fmt.Sprintf(`ON CONFLICT ("id") DO UPDATE SET %s "_dirty" = 0, "_deleted" = excluded."_deleted",
		"_version" = excluded."_version", "_hlc" = excluded."_hlc",
		"_modified_at" = excluded."_modified_at", "_modified_by" = excluded."_modified_by", "_changed" = ''
		WHERE "_dirty" = 0 AND "_version" < excluded."_version"`, set)
	return t
}

// create creates the table, adds the columns the struct gained since the
// database was made (G11), and installs the indexes and the
// change-tracking triggers. It reports whether the table grew: it is new,
// or has new columns, in a database that existed before.
func (t *table) create(ctx context.Context, tx *sql.Tx) (grew bool, err error) {
	have, err := existingColumns(ctx, tx, t.name)
	if err != nil {
		return false, err
	}
	if len(have) == 0 {
		if _, err := tx.ExecContext(ctx, t.createDDL()); err != nil {
			return false, fmt.Errorf("create: %w", err)
		}
		grew = true
	} else if grew, err = t.addColumns(ctx, tx, have); err != nil {
		return false, err
	}
	return grew, t.installTracking(ctx, tx)
}

// createDDL is the CREATE TABLE statement of the table.
func (t *table) createDDL() string {
	var defs []string
	for i, c := range t.cols {
		def := sqlident.Quote(c.Name) + " " + c.Kind.SQLiteType() + references(c)
		if i == 0 {
			def += " PRIMARY KEY NOT NULL"
		}
		defs = append(defs, def)
	}
	return fmt.Sprintf("CREATE TABLE %s (\n\t%s,\n\t%s\n)", sqlident.Quote(t.name), strings.Join(defs, ",\n\t"), bookkeepingDDL)
}

// addColumns adds the entity columns missing from have, the columns the
// table has, and reports whether there were any.
func (t *table) addColumns(ctx context.Context, tx *sql.Tx, have map[string]bool) (added bool, err error) {
	for _, c := range t.cols {
		if have[c.Name] {
			continue
		}
		added = true
		// A column added by a new app version: the rows already here take
		// its default (a reference column stays NULL: SQLite adds
		// references only with a NULL default).
		def := ""
		if c.Ref == "" && !c.Nullable {
			def = " DEFAULT " + c.Default()
		}
		stmt := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s%s%s", sqlident.Quote(t.name), sqlident.Quote(c.Name), c.Kind.SQLiteType(), references(c), def)
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, fmt.Errorf("add column %s: %w", c.Name, err)
		}
	}
	return added, nil
}

// installTracking installs the indexes and the change-tracking triggers.
// The triggers are made anew at every open: the update trigger names every
// column, and the table may have gained some.
func (t *table) installTracking(ctx context.Context, tx *sql.Tx) error {
	for _, name := range []string{"__track_insert", "__track_update", "__track_delete"} {
		if _, err := tx.ExecContext(ctx, "DROP TRIGGER IF EXISTS "+sqlident.Quote(t.name+name)); err != nil {
			return fmt.Errorf("replace tracking: %w", err)
		}
	}
	for _, stmt := range t.triggers() {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("install tracking: %w", err)
		}
	}
	return t.installCounters(ctx, tx)
}

// existingColumns returns the names of the columns of table name; none
// when it does not exist.
func existingColumns(ctx context.Context, tx *sql.Tx, name string) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, name)
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		have[n] = true
	}
	return have, rows.Err()
}

// nowText is the SQL expression of the current time in entity.TimeFormat.
const nowText = `strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000000Z'`

// changedExpr is the new value of _changed when the row old (a table
// name, or OLD in a trigger) takes the values of row neu: the columns
// gathered since the last sync, plus those whose value differs.
func (t *table) changedExpr(old, neu string) string {
	var parts []string
	parts = append(parts, fmt.Sprintf(`CASE WHEN %s."_dirty" = 1 THEN %s."_changed" ELSE '' END`, old, old))
	for _, c := range t.cols[1:] {
		parts = append(parts, fmt.Sprintf(`CASE WHEN %s.%s IS NOT %s.%s THEN ',%s' ELSE '' END`, old, sqlident.Quote(c.Name), neu, sqlident.Quote(c.Name), c.Name))
	}
	return strings.Join(parts, " || ")
}

// changedColumns parses _changed: nil means every column.
func changedColumns(s string) []string {
	if strings.Contains(s, "*") {
		return nil
	}
	seen := map[string]bool{}
	out := []string{}
	for c := range strings.SplitSeq(s, ",") {
		if c != "" && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// references is the foreign key clause of a column with a Ref. It is
// checked when a transaction commits, so that a parent and its children can
// be written in any order within one. A deleted parent stays as a
// tombstone, so its children's references stay valid.
func references(c entity.Column) string {
	if c.Ref == "" {
		return ""
	}
	return fmt.Sprintf(` REFERENCES %s ("id") DEFERRABLE INITIALLY DEFERRED`, sqlident.Quote(c.Ref))
}

// triggers returns the statements that track writes made with plain SQL.
// Writes through Save and Delete set _change themselves and so do not fire
// them; writes applied by the pull engine run with _tether_ctl.suppress set.
// A plain DELETE is turned into a tombstone.
func (t *table) triggers() []string {
	q := sqlident.Quote(t.name)
	mark := func(ref string, extra string) string {
		return fmt.Sprintf(`UPDATE _tether_ctl SET change = change + 1;
	UPDATE %s SET "_dirty" = 1, %s"_hlc" = '', "_modified_at" = %s,
		"_change" = (SELECT change FROM _tether_ctl) WHERE rowid = %s.rowid;`, q, extra, nowText, ref)
	}
	changed := func(expr string) string { return `"_changed" = ` + expr + `, ` }
	notSuppressed := `(SELECT suppress FROM _tether_ctl) = 0`
	return []string{
		fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s ("id") WHERE "_dirty" = 1`, sqlident.Quote(t.name+"__dirty"), q),
		// Rows written with plain SQL wait here for their clock stamp, so
		// that stamping them does not scan every dirty row.
		fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s ("id") WHERE "_dirty" = 1 AND "_hlc" = ''`, sqlident.Quote(t.name+"__unstamped"), q),
		fmt.Sprintf(`CREATE TRIGGER IF NOT EXISTS %s AFTER INSERT ON %s
WHEN NEW."_change" = 0 AND %s BEGIN
	%s
END`, sqlident.Quote(t.name+"__track_insert"), q, notSuppressed, mark("NEW", changed(`'*'`))),
		fmt.Sprintf(`CREATE TRIGGER IF NOT EXISTS %s AFTER UPDATE ON %s
WHEN NEW."_change" = OLD."_change" AND %s BEGIN
	%s
END`, sqlident.Quote(t.name+"__track_update"), q, notSuppressed, mark("NEW", changed(t.changedExpr("OLD", "NEW")))),
		fmt.Sprintf(`CREATE TRIGGER IF NOT EXISTS %s BEFORE DELETE ON %s
WHEN %s BEGIN
	%s
	SELECT RAISE(IGNORE);
END`, sqlident.Quote(t.name+"__track_delete"), q, notSuppressed, mark("OLD", `"_deleted" = 1, `)),
	}
}

// scanRow reads the entity columns and metaCols of one row into the struct
// ptr points to.
func (t *table) scanRow(sc interface{ Scan(...any) error }, ptr any) error {
	raw := make([]any, len(t.cols))
	dest := make([]any, len(t.cols)+6)
	for i := range raw {
		dest[i] = &raw[i]
	}
	var dirty, deleted int
	var m entity.Meta
	var modAt string
	dest[len(t.cols)] = &dirty
	dest[len(t.cols)+1] = &deleted
	dest[len(t.cols)+2] = &m.Version
	var hlc string
	dest[len(t.cols)+3] = &hlc
	dest[len(t.cols)+4] = &modAt
	dest[len(t.cols)+5] = &m.ModifiedBy
	if err := sc.Scan(dest...); err != nil {
		return err
	}
	vals, err := t.canonical(raw)
	if err != nil {
		return err
	}
	if err := t.ent.Load(ptr, vals); err != nil {
		return err
	}
	m.Dirty, m.Deleted = dirty != 0, deleted != 0
	if modAt != "" {
		if m.ModifiedAt, err = entity.ParseTime(modAt); err != nil {
			return fmt.Errorf("_modified_at %q: %w", modAt, err)
		}
	}
	meta, err := t.ent.Meta(ptr)
	if err != nil {
		return err
	}
	*meta = m
	return nil
}

// canonical converts scanned driver values to canonical values.
func (t *table) canonical(raw []any) ([]any, error) {
	out := make([]any, len(raw))
	for i, v := range raw {
		x, err := t.cols[i].Kind.FromDB(v)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", t.name, t.cols[i].Name, err)
		}
		out[i] = x
	}
	return out, nil
}

func entityTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return entity.FormatTime(t)
}
