package localdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/wire"
)

// Counters (entity.Column.Counter). Triggers record every change of a
// counter column made outside a pull, by Save or by plain SQL
// ("UPDATE items SET stock = stock - 1"), as an increment in
// _tether_increments: the new value minus the old, under a UUID the
// server remembers (wire.Increment).
//
//	id     the increment's UUID
//	tbl    table, row and column it changes
//	delta  the new value minus the old
//	sent   1 once a push read it, for the answer to acknowledge
//
// A push carries a row's increments (NextDirty); the commit's answer
// removes those it acknowledged, in the transaction that acknowledges the
// row (FinishPush), and takes the rows the server reported as it holds
// them (wire.Commit.Counted), with the increments made since added. A clean row has no increments, so a
// pulled row, which only a clean row takes, shows the server's total. An
// increment pushed twice (a retried commit, a restored backup, a copied
// database file) counts once: the server knows its id.

// newIncrementID is an SQLite expression for a random (version 4) UUID.
const newIncrementID = `lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' ||
	substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))`

// counterColumns returns the names of t's counter columns.
func (t *table) counterColumns() []string {
	var out []string
	for _, c := range t.cols {
		if c.Counter {
			out = append(out, c.Name)
		}
	}
	return out
}

// installCounters replaces the triggers that record the increments of t's
// counter columns.
func (t *table) installCounters(ctx context.Context, tx *sql.Tx) error {
	old, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name LIKE ? ESCAPE '\'`,
		t.name, strings.ReplaceAll(t.name, "_", `\_`)+`\_\_count\_%`)
	if err != nil {
		return fmt.Errorf("replace counters: %w", err)
	}
	var names []string
	for old.Next() {
		var n string
		if err := old.Scan(&n); err != nil {
			old.Close()
			return err
		}
		names = append(names, n)
	}
	old.Close()
	if err := old.Err(); err != nil {
		return fmt.Errorf("replace counters: %w", err)
	}
	for _, n := range names {
		if _, err := tx.ExecContext(ctx, "DROP TRIGGER "+sqlident.Quote(n)); err != nil {
			return fmt.Errorf("replace counters: %w", err)
		}
	}
	for _, col := range t.counterColumns() {
		for _, stmt := range t.counterTriggers(col) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("install counter %s: %w", col, err)
			}
		}
	}
	return nil
}

// counterTriggers returns the triggers of counter column col: an insert
// counts the row's value, an update the change, each as an increment of
// its own. An increment never changes once made: a copy of the database
// (a backup, a copied file) may push it too, and the server counts an id
// once, so what a change added to an increment the copy holds would be
// lost.
func (t *table) counterTriggers(col string) []string {
	q, c := sqlident.Quote(t.name), sqlident.Quote(col)
	record := func(delta string) string {
		return fmt.Sprintf(`INSERT INTO _tether_increments (id, tbl, "row", col, delta) VALUES (%s, '%s', NEW."id", '%s', %s);`,
			newIncrementID, t.name, col, delta)
	}
	notSuppressed := `(SELECT suppress FROM _tether_ctl) = 0`
	return []string{
		fmt.Sprintf(`CREATE TRIGGER %s AFTER INSERT ON %s
WHEN %s AND coalesce(NEW.%s, 0) <> 0 BEGIN
	%s
END`, sqlident.Quote(t.name+"__count_"+col+"_insert"), q, notSuppressed, c, record(fmt.Sprintf(`coalesce(NEW.%s, 0)`, c))),
		fmt.Sprintf(`CREATE TRIGGER %s AFTER UPDATE OF %s ON %s
WHEN %s AND NEW.%s IS NOT OLD.%s BEGIN
	%s
END`, sqlident.Quote(t.name+"__count_"+col+"_update"), c, q, notSuppressed, c, c,
			record(fmt.Sprintf(`coalesce(NEW.%[1]s, 0) - coalesce(OLD.%[1]s, 0)`, c))),
	}
}

// attachIncrements gives the dirty rows of t just read for a push their
// increments, and marks those as sent, in the transaction that read them.
func attachIncrements(ctx context.Context, tx *sql.Tx, t *table, rows []wire.Row) error {
	if len(rows) == 0 || len(t.counterColumns()) == 0 {
		return nil
	}
	at := make(map[string]int, len(rows))
	for i, r := range rows {
		at[r.ID] = i
	}
	first, last := rows[0].ID, rows[len(rows)-1].ID
	res, err := tx.QueryContext(ctx, `SELECT id, "row", col, delta FROM _tether_increments
		WHERE tbl = ? AND "row" >= ? AND "row" <= ? ORDER BY "row", rowid`, t.name, first, last)
	if err != nil {
		return fmt.Errorf("read increments: %w", err)
	}
	defer res.Close()
	var sent []string
	for res.Next() {
		var inc wire.Increment
		var row string
		if err := res.Scan(&inc.ID, &row, &inc.Column, &inc.Delta); err != nil {
			return err
		}
		i, ok := at[row]
		if !ok || len(rows[i].Increments) == wire.MaxIncrementsPerRow {
			continue // a row not in the batch; increments for the next push
		}
		rows[i].Increments = append(rows[i].Increments, inc)
		sent = append(sent, inc.ID)
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("read increments: %w", err)
	}
	res.Close()
	for _, id := range sent {
		if _, err := tx.ExecContext(ctx, `UPDATE _tether_increments SET sent = 1 WHERE id = ?`, id); err != nil {
			return fmt.Errorf("mark increments sent: %w", err)
		}
	}
	return nil
}

// ackIncrements removes the increments the server acknowledged: those
// sent with the rows of the push session, before the session ends. Those
// are the increments marked sent of rows between the first and the last
// of a batch the session sent (_tether_sent): a row there that was not in
// the batch was clean when it was read, so had no increments, and was not
// read again (or rows recorded one by one in _tether_push, by a version
// of tether before). A row left with increments (more than a push
// carries) stays dirty, for the next push.
func (db *DB) ackIncrements(ctx context.Context, tx *sql.Tx) error {
	if err := ackSentIncrements(ctx, tx); err != nil {
		return fmt.Errorf("acknowledge increments: %w", err)
	}
	for _, t := range db.tables {
		for _, col := range t.counterColumns() {
			_, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET "_dirty" = 1, "_changed" = ',' || ? WHERE "_dirty" = 0 AND "id" IN
				(SELECT "row" FROM _tether_increments WHERE tbl = ? AND col = ?)`, sqlident.Quote(t.name)), col, t.name, col)
			if err != nil {
				return fmt.Errorf("increments left of %s: %w", t.name, err)
			}
		}
	}
	return nil
}

// applyCounted takes the rows the server holds otherwise than this
// device pushed them without a conflict (wire.Commit.Counted): a clean row
// as it is, a row edited since it was read keeps its edit; either way its
// counters become the server's total plus the increments the server has
// not acknowledged. Tracking is suppressed.
func (db *DB) applyCounted(ctx context.Context, tx *sql.Tx, rows []wire.Row) error {
	for _, r := range rows {
		t := db.byName[r.Table]
		if t == nil {
			continue // a table of a newer app version
		}
		db.clock.Observe(r.HLC)
		q := sqlident.Quote(t.name)
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET "_version" = ? WHERE "id" = ?`, q), r.Version, r.ID)
		if err != nil {
			return fmt.Errorf("counted %s %q: %w", t.name, r.ID, err)
		}
		var dirty int
		err = tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT "_dirty" FROM %s WHERE "id" = ?`, q), r.ID).Scan(&dirty)
		if errors.Is(err, sql.ErrNoRows) {
			continue // evicted meanwhile
		}
		if err != nil {
			return fmt.Errorf("counted %s %q: %w", t.name, r.ID, err)
		}
		if dirty == 0 {
			if err := t.upsertRemote(ctx, tx, r); err != nil {
				return err
			}
		}
		for _, col := range t.counterColumns() {
			total, err := entity.KindInteger.FromWire(r.Values[col])
			if err != nil {
				return fmt.Errorf("counted %s %q column %s: %w", t.name, r.ID, col, err)
			}
			if total == nil {
				total = int64(0) // a row from before the column
			}
			_, err = tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET %s = ? + coalesce((SELECT sum(delta) FROM _tether_increments
				WHERE tbl = ? AND "row" = ? AND col = ?), 0) WHERE "id" = ?`, q, sqlident.Quote(col)),
				total, t.name, r.ID, col, r.ID)
			if err != nil {
				return fmt.Errorf("counted %s %q column %s: %w", t.name, r.ID, col, err)
			}
		}
	}
	return nil
}

// keepCounters sets the counters of r, a row about to be written again
// (KeepLocal), to the values the table holds: a counter's value in an old
// copy of a row is no change of it, and would be recorded as one.
func (tx *Tx) keepCounters(ctx context.Context, t *table, r *wire.Row) error {
	for _, col := range t.counterColumns() {
		var v sql.NullInt64
		err := tx.tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE "id" = ?`, sqlident.Quote(col), sqlident.Quote(t.name)), r.ID).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // written anew: its values count
		}
		if err != nil {
			return err
		}
		if r.Values == nil {
			r.Values = map[string]any{}
		}
		r.Values[col] = json.Number(strconv.FormatInt(v.Int64, 10)) // as a pulled row holds it
	}
	return nil
}
