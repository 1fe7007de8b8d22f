package localdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/tethersync/tether/internal/sqlident"
)

// The record of what a push session sent. Each batch the server
// acknowledged (MarkSent) is one row of _tether_sent, whatever its size,
// so that a pushed row is written once on the device: when the commit's
// answer marks it clean (FinishPush).
//
//	seq     the batch's number in the session
//	tbl     its table (a batch holds rows of one table)
//	first   the id of its first row
//	last    the id of its last row
//	change  the highest change counter (_change) of its rows, as read
//	ids     the ids of its rows, a JSON array
//
// A batch is the dirty rows of its table in id order from a position on,
// read in one transaction, so every row between first and last that was
// dirty when the batch was read is in it. And every local write gives the
// row a change counter larger than every one given before. So at the
// commit the rows of the batch unchanged since they were read are exactly
// the dirty rows between first and last whose _change is at most change:
// a row of the batch edited since has a larger one and stays dirty (G2),
// and so has a row that was clean when the batch was read (not in it) and
// was edited since. The few rows left dirty between first and last are
// looked up in ids: those of the batch, edited since, are now based on
// the committed version, the others are left alone.
//
// A batch number sent again replaces its record, as the server replaces
// the batch. Were the same row in two records (read again in a later
// batch), it is clean if unchanged since either read, that is since the
// last one.
//
// _tether_push, the per-row record of the layout before, is still read: a
// push under way when the database was upgraded finishes with the rows it
// recorded there.

// sentIDs encodes the ids of a batch's rows for _tether_sent.ids.
func sentIDs(b DirtyBatch) (table string, ids []byte, change int64, err error) {
	if len(b.changes) != len(b.Rows) {
		return "", nil, 0, errors.New("record sent rows: the batch was not read by NextDirty")
	}
	list := make([]string, len(b.Rows))
	for i, r := range b.Rows {
		if r.Table != b.Rows[0].Table {
			return "", nil, 0, fmt.Errorf("record sent rows: a batch mixes tables %s and %s", b.Rows[0].Table, r.Table)
		}
		if i > 0 && r.ID <= list[i-1] {
			return "", nil, 0, fmt.Errorf("record sent rows: ids out of order (%q after %q)", r.ID, list[i-1])
		}
		list[i] = r.ID
		change = max(change, b.changes[i])
	}
	ids, err = json.Marshal(list)
	return b.Rows[0].Table, ids, change, err
}

// recordSent records batch b as batch number seq of the push session,
// replacing any batch recorded under that number.
func recordSent(ctx context.Context, tx *sql.Tx, seq int, b DirtyBatch) error {
	if len(b.Rows) == 0 {
		return nil
	}
	table, ids, change, err := sentIDs(b)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO _tether_sent (seq, tbl, first, last, change, ids) VALUES (?, ?, ?, ?, ?, ?)`,
		seq, table, b.Rows[0].ID, b.Rows[len(b.Rows)-1].ID, change, string(ids))
	if err != nil {
		return fmt.Errorf("record sent rows: %w", err)
	}
	return nil
}

// forgetSentFrom forgets the batches recorded from number seq on, and the
// rows of the layout before recorded after pos: a last batch the server
// did not commit.
func (db *DB) forgetSentFrom(ctx context.Context, tx *sql.Tx, seq int, pos PushPos) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_sent WHERE seq >= ?`, seq); err != nil {
		return fmt.Errorf("forget final batch: %w", err)
	}
	for i := pos.Table; i < len(db.tables); i++ {
		q, args := `DELETE FROM _tether_push WHERE tbl = ?`, []any{db.tables[i].name}
		if i == pos.Table {
			q, args = q+` AND id > ?`, append(args, pos.After)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("forget final batch: %w", err)
		}
	}
	return nil
}

// clearSent forgets every batch the push session sent.
func clearSent(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_sent`); err != nil {
		return fmt.Errorf("clear sent rows: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_push`); err != nil {
		return fmt.Errorf("clear sent rows: %w", err)
	}
	return nil
}

// forgetSentRow forgets that row id of table was sent: it was removed
// from the database (evicted), and should it come back and be edited, the
// edit is based on what it comes back as, not on the session's commit.
func forgetSentRow(ctx context.Context, tx *sql.Tx, table, id string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_push WHERE tbl = ? AND id = ?`, table, id); err != nil {
		return err
	}
	sent, err := loadSent(ctx, tx, `tbl = ? AND ? BETWEEN first AND last`, table, id)
	if err != nil {
		return err
	}
	for seq, ids := range sent {
		i, ok := slices.BinarySearch(ids, id)
		if !ok {
			continue
		}
		raw, err := json.Marshal(slices.Delete(ids, i, i+1))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE _tether_sent SET ids = ? WHERE seq = ?`, string(raw), seq); err != nil {
			return err
		}
	}
	return nil
}

// loadSent returns the ids of the recorded batches that match where, by
// batch number.
func loadSent(ctx context.Context, tx *sql.Tx, where string, args ...any) (map[int][]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT seq, ids FROM _tether_sent WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read sent rows: %w", err)
	}
	defer rows.Close()
	out := map[int][]string{}
	for rows.Next() {
		var seq int
		var raw string
		if err := rows.Scan(&seq, &raw); err != nil {
			return nil, fmt.Errorf("read sent rows: %w", err)
		}
		var ids []string
		if err := json.Unmarshal([]byte(raw), &ids); err != nil {
			return nil, fmt.Errorf("read sent rows of batch %d: %w", seq, err)
		}
		out[seq] = ids
	}
	return out, rows.Err()
}

// acknowledge marks the rows sent in the session as held by the server at
// version, written by user (the server's record of who wrote them; ""
// keeps what the rows say): clean, unless edited since they were read.
func (db *DB) acknowledge(ctx context.Context, tx *sql.Tx, version int64, user string) error {
	if err := db.acknowledgeRows(ctx, tx, version, user); err != nil {
		return err
	}
	// The tables the recorded batches are of: one a small sync, whatever
	// the number of tables.
	names, err := queryStrings(ctx, tx, `SELECT DISTINCT tbl FROM _tether_sent`)
	if err != nil {
		return fmt.Errorf("acknowledge: %w", err)
	}
	for _, t := range db.tables {
		if !slices.Contains(names, t.name) {
			continue
		}
		// One statement per table; the batches lead, each a range of the
		// dirty index (the planner, without statistics, would rather
		// scan every dirty row for each batch).
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %[1]s SET "_dirty" = 0, "_changed" = '', "_version" = ?,
			"_modified_by" = CASE WHEN ? = '' THEN "_modified_by" ELSE ? END,
			"_stale" = 0 -- the server holds it at this version: a rebuild under way keeps it
			WHERE rowid IN (SELECT t.rowid FROM _tether_sent AS s CROSS JOIN %[1]s AS t INDEXED BY %[2]s
				WHERE s.tbl = ? AND t."_dirty" = 1 AND t."id" BETWEEN s.first AND s.last AND t."_change" <= s.change)`,
			sqlident.Quote(t.name), t.dirtyIndex()), version, user, user, t.name)
		if err != nil {
			return fmt.Errorf("acknowledge %s: %w", t.name, err)
		}
		if err := db.acknowledgeEdited(ctx, tx, t, version, user); err != nil {
			return fmt.Errorf("acknowledge %s: %w", t.name, err)
		}
	}
	return nil
}

// acknowledgeEdited bases the rows of t that were sent and edited since on
// version: those of the recorded batches still dirty once the others are
// clean.
func (db *DB) acknowledgeEdited(ctx context.Context, tx *sql.Tx, t *table, version int64, user string) error {
	q := sqlident.Quote(t.name)
	rows, err := tx.QueryContext(ctx, fmt.Sprintf(`SELECT s.seq, t."id" FROM _tether_sent AS s CROSS JOIN %s AS t INDEXED BY %s
		WHERE s.tbl = ? AND t."_dirty" = 1 AND t."id" BETWEEN s.first AND s.last`, q, t.dirtyIndex()), t.name)
	if err != nil {
		return err
	}
	left := map[int][]string{} // dirty ids between first and last, by batch
	for rows.Next() {
		var seq int
		var id string
		if err := rows.Scan(&seq, &id); err != nil {
			rows.Close()
			return err
		}
		left[seq] = append(left[seq], id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(left) == 0 {
		return err
	}
	sent, err := loadSent(ctx, tx, `tbl = ?`, t.name)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for seq, ids := range left {
		for _, id := range ids {
			if _, ok := slices.BinarySearch(sent[seq], id); !ok || done[id] {
				continue // dirty since after the batch was read: not sent
			}
			done[id] = true
			_, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %[1]s SET "_version" = ?,
				"_modified_by" = CASE WHEN ? = '' THEN "_modified_by" ELSE ? END, "_stale" = 0 WHERE "id" = ?`, q),
				version, user, user, id)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// dirtyIndex is the name of t's index of dirty rows by id, quoted.
func (t *table) dirtyIndex() string { return sqlident.Quote(t.name + "__dirty") }

// ackSentIncrements removes the increments marked sent of the rows
// between the first and the last of each batch the session sent, and of
// the rows recorded in _tether_push.
func ackSentIncrements(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM _tether_increments WHERE rowid IN (SELECT i.rowid
		FROM _tether_sent AS s CROSS JOIN _tether_increments AS i
		WHERE i.tbl = s.tbl AND i."row" BETWEEN s.first AND s.last AND i.sent = 1)`)
	if err != nil {
		return err
	}
	var any int
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM _tether_push)`).Scan(&any); err != nil || any == 0 {
		return err
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM _tether_increments WHERE sent = 1 AND EXISTS
		(SELECT 1 FROM _tether_push AS p WHERE p.tbl = _tether_increments.tbl AND p.id = _tether_increments."row")`)
	return err
}

// acknowledgeRows is acknowledge for the rows recorded one by one in
// _tether_push, by a version of tether before _tether_sent: a push under
// way when the database was upgraded.
func (db *DB) acknowledgeRows(ctx context.Context, tx *sql.Tx, version int64, user string) error {
	var any int
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM _tether_push)`).Scan(&any); err != nil || any == 0 {
		return err
	}
	for _, t := range db.tables {
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %[1]s SET
			"_dirty" = CASE WHEN %[1]s."_change" = p.change THEN 0 ELSE %[1]s."_dirty" END,
			"_changed" = CASE WHEN %[1]s."_change" = p.change THEN '' ELSE %[1]s."_changed" END,
			"_version" = ?,
			"_modified_by" = CASE WHEN ? = '' THEN %[1]s."_modified_by" ELSE ? END,
			"_stale" = 0
			FROM _tether_push AS p WHERE p.tbl = ? AND p.id = %[1]s."id"`, sqlident.Quote(t.name)), version, user, user, t.name)
		if err != nil {
			return fmt.Errorf("acknowledge %s: %w", t.name, err)
		}
	}
	return nil
}
