package localdb

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/wire"
)

// The store's side of the pull engine (package pull): the position in the
// server's change feed (Cursor), the pages applied with the position after
// them (ApplyChanges), and the push sessions whose rows the device already
// holds (OwnSessions).

// Cursor returns the stored pull cursor; "" before the first pull.
func (s *Syncer) Cursor(ctx context.Context) (string, error) {
	db := s.db
	if err := db.checkOpen("Cursor"); err != nil {
		return "", err
	}
	c, err := getState(ctx, db.sql, stateCursor)
	if err != nil {
		return "", fmt.Errorf("localdb: %w", err)
	}
	return c, nil
}

// ApplyChanges applies a page of pulled rows, after the pages set aside
// by StashChanges, and stores the cursor after them, in one transaction,
// with change tracking suppressed and foreign keys checked at commit: an
// app reading the database sees every server version whole, or not at
// all (G4). A locally dirty row is not overwritten: its edit goes up in
// the next push and the server resolves the conflict. A row the device
// already holds at the same or a later version is skipped. It returns the
// number of rows written.
func (s *Syncer) ApplyChanges(ctx context.Context, rows []wire.Row, cursor string) (int, error) {
	if err := s.db.checkOpen("ApplyChanges"); err != nil {
		return 0, err
	}
	return s.db.applyChanges(ctx, rows, cursor, 0)
}

// ApplyLastChanges is ApplyChanges for the last page of a pull: in the
// same transaction, it forgets the own sessions up to ownMark (from
// OwnSessions; 0 forgets none), which the pull has passed.
func (s *Syncer) ApplyLastChanges(ctx context.Context, rows []wire.Row, cursor string, ownMark int64) (int, error) {
	if err := s.db.checkOpen("ApplyLastChanges"); err != nil {
		return 0, err
	}
	return s.db.applyChanges(ctx, rows, cursor, ownMark)
}

// applyChanges is ApplyChanges, which forgets the own sessions up to
// ownMark with the cursor.
func (db *DB) applyChanges(ctx context.Context, rows []wire.Row, cursor string, ownMark int64) (int, error) {
	if len(rows) == 0 { // the usual pull of a small sync: nothing came
		done, err := db.moveCursor(ctx, cursor, ownMark)
		if err != nil {
			return 0, fmt.Errorf("localdb: apply changes: %w", err)
		}
		if done {
			return 0, nil
		}
	}
	n, err := db.writeRemote(ctx, rows, true, func(t *table) string {
		if db.refill > 0 {
			return t.applyTail + fmt.Sprintf(` OR ("_dirty" = 0 AND "_version" <= %d)`, db.refill)
		}
		return t.applyTail
	}, func(tx *sql.Tx) error {
		if err := forgetOwn(ctx, tx, ownMark); err != nil {
			return err
		}
		return setState(ctx, tx, stateCursor, cursor)
	})
	if err != nil {
		return 0, fmt.Errorf("localdb: apply changes: %w", err)
	}
	return n, nil
}

// moveCursor stores cursor after a page without rows, and forgets the own
// sessions up to ownMark, in one transaction that writes nothing else,
// unless rows are set aside, which writeRemote writes with the page (done
// false).
func (db *DB) moveCursor(ctx context.Context, cursor string, ownMark int64) (done bool, err error) {
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		var stashed bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM _tether_stash)`).Scan(&stashed); err != nil {
			return fmt.Errorf("read stash: %w", err)
		}
		if stashed {
			return nil
		}
		done = true
		if err := forgetOwn(ctx, tx, ownMark); err != nil {
			return err
		}
		return setStates(ctx, tx, stateCursor, cursor, stateClock, db.clock.last())
	})
	return done && err == nil, err
}

// StashChanges sets a page of pulled rows aside, on disk, with the cursor
// after it, in one transaction: a page that ends inside a server version
// (wire.Changes.Partial), which ApplyChanges applies with the page that
// completes it. An interrupted pull goes on from the cursor, with what it
// set aside.
func (s *Syncer) StashChanges(ctx context.Context, page wire.Changes) error {
	db := s.db
	if err := db.checkOpen("StashChanges"); err != nil {
		return err
	}
	if err := db.setAside(ctx, page, stateCursor, page.Cursor); err != nil {
		return fmt.Errorf("localdb: set a partial page aside: %w", err)
	}
	return nil
}

// setAside appends the rows of page to the stash and stores state key's
// position after them, in one large transaction (see inTxUnchecked); the
// next writeRemote, which applies them, is large too.
func (db *DB) setAside(ctx context.Context, page wire.Changes, key, pos string) error {
	err := db.inTxUnchecked(ctx, true, func(tx *sql.Tx) error {
		if err := stash(ctx, tx, page); err != nil {
			return err
		}
		return setState(ctx, tx, key, pos)
	})
	if err == nil {
		db.stashed.Store(true)
	}
	return err
}

// An entry of _tether_stash holds a page of rows: a JSON array of them,
// as wire.AppendBatch writes a batch's rows. An entry that is an object
// holds one row, as encoding/json writes it: pages were set aside row by
// row before. (An older version of tether that finds a page there fails
// to read it, and does not pass over its rows.)

// isStashedPage reports whether a stash entry holds a page.
func isStashedPage(text string) bool { return strings.HasPrefix(text, "[") }

// stashedPage returns a reader of the batch whose rows entry holds.
func stashedPage(entry string) io.Reader {
	return io.MultiReader(strings.NewReader(`{"rows":`), strings.NewReader(entry), strings.NewReader("}"))
}

// stash appends the rows of page to _tether_stash, as one entry: the
// array the server sent when it came with the page (wire.Changes.Raw,
// which must hold page.Changes), else written again.
func stash(ctx context.Context, tx *sql.Tx, page wire.Changes) error {
	if len(page.Changes) == 0 {
		return nil
	}
	b := page.Raw
	if b == nil {
		var err error
		if b, err = wire.AppendBatch(nil, page.Changes); err != nil {
			return err
		}
		b = bytes.TrimSuffix(bytes.TrimPrefix(b, []byte(`{"rows":`)), []byte("}\n"))
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO _tether_stash (row) VALUES (?)`, string(b))
	return err
}

// stashChunk is the number of stashed rows read at once, at least: an
// entry is read whole.
const stashChunk = 1000

// unstash calls f with the rows set aside, in order, about stashChunk at
// a time, and empties the stash.
func unstash(ctx context.Context, tx *sql.Tx, f func([]wire.Row) error) error {
	seq := int64(-1)
	for {
		page, err := unstashChunk(ctx, tx, &seq)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM _tether_stash`)
			return err
		}
		if err := f(page); err != nil {
			return err
		}
	}
}

// unstashChunk reads the entries of the stash after *seq until it holds
// stashChunk rows or the stash ends, and moves *seq past them.
func unstashChunk(ctx context.Context, tx *sql.Tx, seq *int64) ([]wire.Row, error) {
	rows, err := tx.QueryContext(ctx, `SELECT seq, row FROM _tether_stash WHERE seq > ? ORDER BY seq`, *seq)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var page []wire.Row
	for len(page) < stashChunk && rows.Next() {
		var text string
		if err := rows.Scan(seq, &text); err != nil {
			return nil, err
		}
		if isStashedPage(text) {
			b, err := wire.ReadBatch(stashedPage(text))
			if err != nil {
				return nil, fmt.Errorf("stashed page: %w", err)
			}
			page = append(page, b.Rows...)
			continue
		}
		var r wire.Row
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber() // as the client reads pages
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("stashed row: %w", err)
		}
		page = append(page, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return page, rows.Close()
}

// holdsOrReferenced reports whether the device holds the row id of t, or
// holds a row that references it.
func (db *DB) holdsOrReferenced(ctx context.Context, tx *sql.Tx, t *table, id string) (bool, error) {
	queries := []string{`SELECT 1 FROM ` + sqlident.Quote(t.name) + ` WHERE "id" = ?`}
	for _, c := range db.tables {
		for _, col := range c.cols {
			if col.Ref == t.name {
				queries = append(queries, `SELECT 1 FROM `+sqlident.Quote(c.name)+` WHERE `+sqlident.Quote(col.Name)+` = ? LIMIT 1`)
			}
		}
	}
	for _, q := range queries {
		var one int
		err := tx.QueryRowContext(ctx, q, id).Scan(&one)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return false, err
		}
	}
	return false, nil
}

// upsertRemote writes a row received from the server, clean.
func (t *table) upsertRemote(ctx context.Context, tx *sql.Tx, r wire.Row) error {
	args, err := t.remoteArgs(r)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, t.upsertPull, args...); err != nil {
		return fmt.Errorf("apply %s %q: %w", t.name, r.ID, err)
	}
	return nil
}

// remoteArgs returns the arguments of upsertPull for r: the entity
// columns, then the bookkeeping columns after "_dirty".
func (t *table) remoteArgs(r wire.Row) ([]any, error) {
	args, err := t.wireArgs(r)
	if err != nil {
		return nil, err
	}
	return append(args, r.Deleted, r.Version, r.HLC, entityTime(stampTime(r.HLC)), r.ModifiedBy), nil
}

// wireArgs converts the values of a received row to SQL arguments in
// column order. Columns the row lacks are NULL.
func (t *table) wireArgs(r wire.Row) ([]any, error) {
	args := make([]any, len(t.cols), len(t.cols)+6) // room for remoteRow
	args[0] = r.ID
	for i, c := range t.cols[1:] {
		v, err := c.Kind.FromWire(r.Values[c.Name])
		if err != nil {
			return nil, fmt.Errorf("%s %q column %s: %w", t.name, r.ID, c.Name, err)
		}
		args[i+1] = v
	}
	return args, nil
}

// OwnSessions returns the push sessions this database committed and whose
// rows it holds as pushed, which no pull has passed yet: at most
// wire.MaxEchoSessions, the latest, and a mark for ApplyLastChanges. A pull names
// them so that the server does not send those rows back (a copy of the
// database, or one restored from a backup, does not have the sessions the
// other committed, and so gets their rows).
func (s *Syncer) OwnSessions(ctx context.Context) ([]string, int64, error) {
	db := s.db
	if err := db.checkOpen("OwnSessions"); err != nil {
		return nil, 0, err
	}
	// The limit in the text, not bound: see OpenWith.
	rows, err := db.sql.QueryContext(ctx, fmt.Sprintf(`SELECT seq, session FROM _tether_own ORDER BY seq DESC LIMIT %d`, wire.MaxEchoSessions))
	if err != nil {
		return nil, 0, fmt.Errorf("localdb: own sessions: %w", err)
	}
	defer rows.Close()
	var out []string
	var mark int64
	for rows.Next() {
		var seq int64
		var s string
		if err := rows.Scan(&seq, &s); err != nil {
			return nil, 0, fmt.Errorf("localdb: own sessions: %w", err)
		}
		out = append(out, s)
		mark = max(mark, seq)
	}
	return out, mark, rows.Err()
}

// forgetOwn forgets the own sessions up to mark; 0 forgets none.
func forgetOwn(ctx context.Context, q execer, mark int64) error {
	if mark <= 0 {
		return nil
	}
	if _, err := q.ExecContext(ctx, `DELETE FROM _tether_own WHERE seq <= ?`, mark); err != nil {
		return fmt.Errorf("forget own sessions: %w", err)
	}
	return nil
}
