package localdb

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlbatch"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/wire"
)

// This file is the store's side of the push and pull engines. The engines
// keep their whole state in the database, so that an interrupted sync
// resumes where it stopped (G5).

// PushPos is a position in the scan of dirty rows: the index of a table in
// priority order and the last id read from it.
type PushPos struct {
	// Table is the index of the table in priority order.
	Table int
	// After is the last id read from that table; "" for none.
	After string
}

// PushState is the persisted state of an unfinished push session.
type PushState struct {
	Session string  // server session id; "" when no push is under way
	Seq     int     // number of batches the server acknowledged
	Pos     PushPos // where the next batch starts
	// Final reports that batch Seq, the session's last, was sent with the
	// commit and its answer is unknown: it is recorded as sent (MarkSent),
	// and Seq and Pos are still before it. Whether it was committed is
	// for the server's answer to the commit to tell (wire.Commit.Batches):
	// FinishPush if it was, ForgetFinal if not.
	Final bool
	// FinalDigest is the digest of the last batch's body, with Final
	// (wire.LastBatch).
	FinalDigest string
}

// DirtyBatch is a batch of dirty rows read for pushing.
type DirtyBatch struct {
	// Rows are dirty rows of one table, in id order.
	Rows []wire.Row
	// Next is the position after the batch.
	Next    PushPos
	changes []int64
}

// PushState returns the state of the unfinished push session, if any.
func (s *Syncer) PushState(ctx context.Context) (PushState, error) {
	db := s.db
	if err := db.checkOpen("PushState"); err != nil {
		return PushState{}, err
	}
	var st PushState
	var err error
	if st.Session, err = getState(ctx, db.sql, statePushSession); err != nil || st.Session == "" {
		return PushState{}, err
	}
	seq, err := getState(ctx, db.sql, statePushSeq)
	if err != nil {
		return PushState{}, err
	}
	st.Seq, _ = strconv.Atoi(seq)
	pos, err := getState(ctx, db.sql, statePushPos)
	if err != nil {
		return PushState{}, err
	}
	idx, after, _ := strings.Cut(pos, ":")
	st.Pos.Table, _ = strconv.Atoi(idx)
	st.Pos.After = after
	final, err := getState(ctx, db.sql, statePushFinal)
	if err != nil {
		return PushState{}, err
	}
	st.Final, st.FinalDigest = final != "", final
	if final == "1" { // recorded by a version that kept no digest
		st.FinalDigest = ""
	}
	return st, nil
}

func savePushState(ctx context.Context, tx *sql.Tx, st PushState) error {
	if err := setState(ctx, tx, statePushSession, st.Session); err != nil {
		return err
	}
	if err := setState(ctx, tx, statePushSeq, strconv.Itoa(st.Seq)); err != nil {
		return err
	}
	final := ""
	if st.Final {
		final = cmp.Or(st.FinalDigest, "1")
	}
	if err := setState(ctx, tx, statePushFinal, final); err != nil {
		return err
	}
	return setState(ctx, tx, statePushPos, fmt.Sprintf("%d:%s", st.Pos.Table, st.Pos.After))
}

// NextAttempt returns a new attempt number for the batches a push is about
// to send (wire.BatchAttempt), larger than every one returned before, and
// stores it first.
func (s *Syncer) NextAttempt(ctx context.Context) (int64, error) {
	db := s.db
	if err := db.checkOpen("NextAttempt"); err != nil {
		return 0, err
	}
	var n int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getState(ctx, tx, statePushAttempt)
		if err != nil {
			return err
		}
		n, _ = strconv.ParseInt(cur, 10, 64)
		n++
		return setState(ctx, tx, statePushAttempt, strconv.FormatInt(n, 10))
	})
	if err != nil {
		return 0, fmt.Errorf("localdb: next push attempt: %w", err)
	}
	return n, nil
}

// ForgetFinal forgets the last batch of the push session, recorded as sent
// with the commit (PushState.Final), when the server did not commit it:
// its rows stay dirty, for the next batch or session to send again.
func (s *Syncer) ForgetFinal(ctx context.Context) error {
	db := s.db
	if err := db.checkOpen("ForgetFinal"); err != nil {
		return err
	}
	st, err := s.PushState(ctx)
	if err != nil || !st.Final {
		return err
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		// The final batch's rows are those recorded after the position.
		for i := st.Pos.Table; i < len(db.tables); i++ {
			q, args := `DELETE FROM _tether_push WHERE tbl = ?`, []any{db.tables[i].name}
			if i == st.Pos.Table {
				q, args = q+` AND id > ?`, append(args, st.Pos.After)
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("forget final batch: %w", err)
			}
		}
		st.Final = false
		return savePushState(ctx, tx, st)
	})
}

// BeginPush records a new push session, forgetting any earlier one.
func (s *Syncer) BeginPush(ctx context.Context, session string) error {
	db := s.db
	if err := db.checkOpen("BeginPush"); err != nil {
		return err
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_push`); err != nil {
			return err
		}
		return savePushState(ctx, tx, PushState{Session: session})
	})
}

// AbandonPush forgets the push session, for example when the server no
// longer knows it. Rows stay dirty and go up in the next session.
func (s *Syncer) AbandonPush(ctx context.Context) error {
	db := s.db
	if err := db.checkOpen("AbandonPush"); err != nil {
		return err
	}
	return s.BeginPush(ctx, "")
}

// NextDirty reads up to limit dirty rows from pos on, in table priority
// order and id order within a table. A batch holds rows of one table. An
// empty batch means no dirty rows remain after pos. Rows written with plain
// SQL get their clock stamp here.
func (s *Syncer) NextDirty(ctx context.Context, pos PushPos, limit int) (DirtyBatch, error) {
	db := s.db
	if err := db.checkOpen("NextDirty"); err != nil {
		return DirtyBatch{}, err
	}
	for ; pos.Table < len(db.tables); pos = (PushPos{Table: pos.Table + 1}) {
		b, err := db.dirtyFrom(ctx, db.tables[pos.Table], pos, limit)
		if err != nil {
			return DirtyBatch{}, fmt.Errorf("localdb: read dirty %s: %w", db.tables[pos.Table].name, err)
		}
		if len(b.Rows) > 0 {
			return b, nil
		}
	}
	return DirtyBatch{Next: pos}, nil
}

func (db *DB) dirtyFrom(ctx context.Context, t *table, pos PushPos, limit int) (DirtyBatch, error) {
	var b DirtyBatch
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := db.stampRaw(ctx, tx, t); err != nil {
			return err
		}
		if pos.After == "" { // once per push and table
			if err := db.restampInsane(ctx, tx, t); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, fmt.Sprintf(`SELECT %s, "_change", "_changed" FROM %s
			WHERE "_dirty" = 1 AND "id" > ? ORDER BY "id" LIMIT ?`, t.selectCols, sqlident.Quote(t.name)), pos.After, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var changed string
			r, change, err := t.scanWire(rows, &changed)
			if err != nil {
				return err
			}
			r.Changed = changedColumns(changed)
			b.Rows = append(b.Rows, r)
			b.changes = append(b.changes, change)
		}
		return rows.Err()
	})
	b.Next = pos
	if n := len(b.Rows); n > 0 {
		b.Next.After = b.Rows[n-1].ID
	}
	return b, err
}

// restampInsane gives a new stamp to dirty rows whose stamp the clock
// could not have made (from far in the future, malformed, or another
// device's): the server would refuse them, and with them every later push.
// A database that held a poisoned clock before MaxStampAhead recovers so.
func (db *DB) restampInsane(ctx context.Context, tx *sql.Tx, t *table) error {
	rows, err := tx.QueryContext(ctx, fmt.Sprintf(`SELECT "id", "_hlc" FROM %s WHERE "_dirty" = 1 AND "_hlc" <> ''`, sqlident.Quote(t.name)))
	if err != nil {
		return fmt.Errorf("check stamps: %w", err)
	}
	var insane []string
	for rows.Next() {
		var id, hlc string
		if err := rows.Scan(&id, &hlc); err != nil {
			rows.Close()
			return err
		}
		if !db.clock.sane(hlc) {
			insane = append(insane, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(insane) == 0 {
		return err
	}
	if err := setSuppress(ctx, tx, true); err != nil {
		return err
	}
	for _, id := range insane {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET "_hlc" = ? WHERE "id" = ?`, sqlident.Quote(t.name)), db.clock.Now(), id); err != nil {
			return fmt.Errorf("restamp: %w", err)
		}
	}
	if err := setState(ctx, tx, stateClock, db.clock.last()); err != nil {
		return err
	}
	return setSuppress(ctx, tx, false)
}

// stampRaw gives a clock stamp to dirty rows written with plain SQL.
func (db *DB) stampRaw(ctx context.Context, tx *sql.Tx, t *table) error {
	if err := setSuppress(ctx, tx, true); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET "_hlc" = ? WHERE "_dirty" = 1 AND "_hlc" = ''`, sqlident.Quote(t.name)), db.clock.Now())
	if err != nil {
		return fmt.Errorf("stamp raw writes: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		if err := setState(ctx, tx, stateClock, db.clock.last()); err != nil {
			return err
		}
	}
	return setSuppress(ctx, tx, false)
}

// scanWire reads one row of selectCols plus _change, and the extra
// columns into extra, as a push row.
func (t *table) scanWire(rows *sql.Rows, extra ...any) (wire.Row, int64, error) {
	raw := make([]any, len(t.cols))
	dest := make([]any, 0, len(t.cols)+7)
	for i := range raw {
		dest = append(dest, &raw[i])
	}
	var dirty, deleted int
	var r wire.Row
	var modAt, modBy string
	var change int64
	dest = append(dest, &dirty, &deleted, &r.Base, &r.HLC, &modAt, &modBy, &change)
	dest = append(dest, extra...)
	if err := rows.Scan(dest...); err != nil {
		return wire.Row{}, 0, err
	}
	vals, err := t.canonical(raw)
	if err != nil {
		return wire.Row{}, 0, err
	}
	r.Table, r.ID, r.Deleted = t.name, vals[0].(string), deleted != 0
	r.Values = make(map[string]any, len(vals)-1)
	for i, c := range t.cols[1:] {
		r.Values[c.Name] = vals[i+1]
	}
	return r, change, nil
}

// MarkSent records that the server acknowledged batch b as batch number
// st.Seq of session st.Session, and stores the new push state, in one
// transaction. With st.Final, b is instead about to be sent as the
// session's last batch, with the commit, and st is the state before it.
func (s *Syncer) MarkSent(ctx context.Context, b DirtyBatch, st PushState) error {
	db := s.db
	if err := db.checkOpen("MarkSent"); err != nil {
		return err
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		in := sqlbatch.New(tx, `INSERT INTO _tether_push (tbl, id, change)`,
			`ON CONFLICT (tbl, id) DO UPDATE SET change = excluded.change`, 3)
		for i, r := range b.Rows {
			if err := in.Add(ctx, r.Table, r.ID, b.changes[i]); err != nil {
				return fmt.Errorf("record sent rows: %w", err)
			}
		}
		if err := in.Flush(ctx); err != nil {
			return fmt.Errorf("record sent rows: %w", err)
		}
		return savePushState(ctx, tx, st)
	})
}

// FinishPush applies the server's answer to a committed session: rows
// unchanged since they were read are clean at the new version; rows edited
// meanwhile stay dirty (G2); rows whose conflict the server's row or a
// merge won take the winning row, unless edited meanwhile. Every conflict
// is recorded in the conflict log (see Conflicts). It ends the push
// session.
//
// With own, the session is recorded as one whose rows this database holds
// as pushed (see OwnSessions).
func (s *Syncer) FinishPush(ctx context.Context, c wire.Commit, own bool) error {
	db := s.db
	if err := db.checkOpen("FinishPush"); err != nil {
		return err
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if err := setSuppress(ctx, tx, true); err != nil {
			return err
		}
		for _, t := range db.tables {
			_, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %[1]s SET
				"_dirty" = CASE WHEN %[1]s."_change" = p.change THEN 0 ELSE %[1]s."_dirty" END,
				"_changed" = CASE WHEN %[1]s."_change" = p.change THEN '' ELSE %[1]s."_changed" END,
				"_version" = ?,
				"_stale" = 0 -- the server holds it at this version: a rebuild under way keeps it
				FROM _tether_push AS p WHERE p.tbl = ? AND p.id = %[1]s."id"`, sqlident.Quote(t.name)), c.Version, t.name)
			if err != nil {
				return fmt.Errorf("acknowledge %s: %w", t.name, err)
			}
		}
		for _, cf := range c.Conflicts {
			if err := db.logConflict(ctx, tx, cf); err != nil {
				return err
			}
			if cf.Winner == wire.WinnerClient {
				continue
			}
			if err := db.applyWinner(ctx, tx, cf.Row); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_push`); err != nil {
			return err
		}
		// This database holds what it pushed in the session, as the server
		// kept it: the next pull need not bring it back (see OwnSessions).
		session, err := getState(ctx, tx, statePushSession)
		if err != nil {
			return err
		}
		if session != "" && own {
			if _, err := tx.ExecContext(ctx, `INSERT INTO _tether_own (session, version) VALUES (?, ?)`, session, c.Version); err != nil {
				return fmt.Errorf("record own session: %w", err)
			}
		}
		if err := savePushState(ctx, tx, PushState{}); err != nil {
			return err
		}
		if err := setState(ctx, tx, stateClock, db.clock.last()); err != nil {
			return err
		}
		// Closed conflict log entries past their retention go.
		if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_conflicts WHERE state <> 'open' AND at < ?`,
			entity.FormatTime(db.clock.now().Add(-db.conflictRetention))); err != nil {
			return fmt.Errorf("conflict log retention: %w", err)
		}
		return setSuppress(ctx, tx, false)
	})
}

// applyWinner stores a row the server kept in a conflict. A row edited
// since it was pushed keeps its edit, now based on the winner's version.
func (db *DB) applyWinner(ctx context.Context, tx *sql.Tx, r wire.Row) error {
	t := db.byName[r.Table]
	if t == nil {
		return fmt.Errorf("conflict on unknown table %q", r.Table)
	}
	db.clock.Observe(r.HLC)
	var dirty int
	err := tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT "_dirty" FROM %s WHERE "id" = ?`, sqlident.Quote(t.name)), r.ID).Scan(&dirty)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("conflict %s %q: %w", t.name, r.ID, err)
	}
	if dirty != 0 {
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET "_version" = ? WHERE "id" = ?`, sqlident.Quote(t.name)), r.Version, r.ID)
		return err
	}
	return t.upsertRemote(ctx, tx, r)
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
	return append(args, r.Deleted, r.Version, r.HLC, entityTime(StampTime(r.HLC)), r.ModifiedBy), nil
}

// wireArgs converts the values of a received row to SQL arguments in
// column order. Columns the row lacks are NULL.
func (t *table) wireArgs(r wire.Row) ([]any, error) {
	args := make([]any, len(t.cols), len(t.cols)+5)
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

// ApplyChanges applies a page of pulled rows and stores the cursor after
// them, in one transaction, with change tracking suppressed and foreign
// keys checked at commit. A locally dirty row is not overwritten: its edit
// goes up in the next push and the server resolves the conflict. A row the
// device already holds at the same or a later version is skipped. It
// returns the number of rows written.
func (s *Syncer) ApplyChanges(ctx context.Context, rows []wire.Row, cursor string) (int, error) {
	db := s.db
	if err := db.checkOpen("ApplyChanges"); err != nil {
		return 0, err
	}
	n, err := db.writeRemote(ctx, rows, stateCursor, cursor, true, func(t *table) string {
		if db.refill > 0 {
			return t.applyTail + fmt.Sprintf(` OR ("_dirty" = 0 AND "_version" <= %d)`, db.refill)
		}
		return t.applyTail
	})
	if err != nil {
		return 0, fmt.Errorf("localdb: apply changes: %w", err)
	}
	return n, nil
}

// writeRemote writes rows received from the server, clean, with the upsert
// tail of each table, and stores position under key, in one transaction
// with change tracking suppressed. With notify, the rows the server marked
// for this device go into its conflict log first. It returns the number of
// rows written.
func (db *DB) writeRemote(ctx context.Context, rows []wire.Row, key, position string, notify bool, tail func(*table) string) (int, error) {
	written := 0
	err := db.inTxUnchecked(ctx, func(tx *sql.Tx) error {
		if err := setSuppress(ctx, tx, true); err != nil {
			return err
		}
		ins := map[*table]*sqlbatch.Inserter{}
		for _, r := range rows {
			t := db.byName[r.Table]
			if t == nil {
				continue // a table of a newer app version: not this device's
			}
			if r.Deleted {
				// The tombstone of a row this device never held tells it
				// nothing, and may reference a row it does not hold either
				// (a rebuilt device's parents are gone): not stored, unless
				// a row here references it.
				keep, err := db.holdsOrReferenced(ctx, tx, t, r.ID)
				if err != nil {
					return err
				}
				if !keep {
					continue
				}
			}
			if notify && r.Notify == db.device && r.Reason != "" {
				// The server undid this device's action to keep references
				// whole: it goes into the conflict log, with the row as it
				// stands here before the change.
				cf := wire.Conflict{Table: r.Table, ID: r.ID, Strategy: "reference", Winner: wire.WinnerServer, Row: r, Reason: r.Reason}
				if err := db.logConflict(ctx, tx, cf); err != nil {
					return err
				}
			}
			db.clock.Observe(r.HLC)
			args, err := t.remoteArgs(r)
			if err != nil {
				return err
			}
			// A received row is clean: "_dirty" = 0 comes first among the
			// bookkeeping columns.
			args = slices.Insert(args, len(t.cols), any(0))
			in := ins[t]
			if in == nil {
				in = sqlbatch.New(tx, t.applyHead, tail(t), len(args))
				ins[t] = in
			}
			if err := in.Add(ctx, args...); err != nil {
				return fmt.Errorf("write %s: %w", t.name, err)
			}
		}
		for t, in := range ins {
			if err := in.Flush(ctx); err != nil {
				return fmt.Errorf("write %s: %w", t.name, err)
			}
			written += int(in.Affected)
		}
		if err := setState(ctx, tx, key, position); err != nil {
			return err
		}
		if err := setState(ctx, tx, stateClock, db.clock.last()); err != nil {
			return err
		}
		return setSuppress(ctx, tx, false)
	})
	return written, err
}

func setSuppress(ctx context.Context, tx *sql.Tx, on bool) error {
	v := 0
	if on {
		v = 1
	}
	if _, err := tx.ExecContext(ctx, `UPDATE _tether_ctl SET suppress = ?`, v); err != nil {
		return fmt.Errorf("set tracking suppression: %w", err)
	}
	return nil
}

// inTxUnchecked runs fn in a write transaction with foreign keys not
// enforced. Pulled rows come in commit order of their latest versions, so a
// child may arrive a page before its parent (a parent updated after its
// child was written); the server's rows are consistent, and the references
// hold again once the pull is complete.
func (db *DB) inTxUnchecked(ctx context.Context, fn func(tx *sql.Tx) error) error {
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The pragma is a no-op inside a transaction: set it around one.
	if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
		return err
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`); err != nil {
			// Never hand a connection without foreign keys back to the pool.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	return runTx(tx, err, fn)
}

// inTx runs fn in a write transaction.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	return runTx(tx, err, fn)
}

// runTx runs fn in tx, just begun with error err, and commits it when fn
// succeeds.
func runTx(tx *sql.Tx, err error, fn func(tx *sql.Tx) error) error {
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Digest returns the entity.Digest of the rows of table this database
// holds, deleted rows and rows not yet pushed included, and the number of
// rows waiting to be pushed.
func (s *Syncer) Digest(ctx context.Context, table string) (wire.TableDigest, int, error) {
	db := s.db
	if err := db.checkOpen("Digest"); err != nil {
		return wire.TableDigest{}, 0, err
	}
	t := db.byName[table]
	if t == nil {
		return wire.TableDigest{}, 0, fmt.Errorf("localdb: digest: unknown table %q", table)
	}
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = sqlident.Quote(c.Name)
	}
	var out wire.TableDigest
	var pending int
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, t.countDirty).Scan(&pending); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, fmt.Sprintf(`SELECT "_deleted", %s FROM %s WHERE "_deleted" = 0 ORDER BY "id"`, strings.Join(names, ", "), sqlident.Quote(t.name)))
		if err != nil {
			return err
		}
		defer rows.Close()
		d, err := entity.DigestRows(&t.ent.Table, rows.Next, rows.Scan)
		if err != nil {
			return err
		}
		out = wire.TableDigest{Table: table, Rows: d.Rows(), SHA256: d.Sum()}
		return rows.Err()
	})
	if err != nil {
		return wire.TableDigest{}, 0, fmt.Errorf("localdb: digest %s: %w", table, err)
	}
	return out, pending, nil
}

// readTx runs fn in a read transaction: one consistent snapshot.
func (db *DB) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.sql.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// OwnSessions returns the push sessions this database committed and whose
// rows it holds as pushed, which no pull has passed yet: at most
// wire.MaxEchoSessions, the latest, and a mark for ForgetOwn. A pull names
// them so that the server does not send those rows back (a copy of the
// database, or one restored from a backup, does not have the sessions the
// other committed, and so gets their rows).
func (s *Syncer) OwnSessions(ctx context.Context) ([]string, int64, error) {
	db := s.db
	if err := db.checkOpen("OwnSessions"); err != nil {
		return nil, 0, err
	}
	rows, err := db.sql.QueryContext(ctx, `SELECT seq, session FROM _tether_own ORDER BY seq DESC LIMIT ?`, wire.MaxEchoSessions)
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

// ForgetOwn forgets the own sessions up to mark (from OwnSessions), once a
// pull has passed every row they wrote.
func (s *Syncer) ForgetOwn(ctx context.Context, mark int64) error {
	db := s.db
	if err := db.checkOpen("ForgetOwn"); err != nil {
		return err
	}
	if _, err := db.sql.ExecContext(ctx, `DELETE FROM _tether_own WHERE seq <= ?`, mark); err != nil {
		return fmt.Errorf("localdb: forget own sessions: %w", err)
	}
	return nil
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
