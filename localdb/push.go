package localdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/wire"
)

// The store's side of the push engine (package push). A push session reads
// dirty rows in batches (NextDirty), records each batch the server
// acknowledged with the state after it (MarkSent), and ends with the
// server's answer to the commit (FinishPush). The whole state is in the
// database, so an interrupted push resumes where it stopped (G5).

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
	// for the server's answer to the settle to tell (wire.Commit.Settled):
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

// PushState returns the state of the unfinished push session, if any. A
// stored state it cannot parse is an error.
func (s *Syncer) PushState(ctx context.Context) (PushState, error) {
	db := s.db
	if err := db.checkOpen("PushState"); err != nil {
		return PushState{}, err
	}
	st, err := readPushState(ctx, db.sql)
	if err != nil {
		return PushState{}, fmt.Errorf("localdb: %s: %w", db.path, err)
	}
	return st, nil
}

// readPushState reads the push state stored by savePushState.
func readPushState(ctx context.Context, q execer) (PushState, error) {
	var st PushState
	var err error
	if st.Session, err = getState(ctx, q, statePushSession); err != nil || st.Session == "" {
		return PushState{}, err
	}
	seq, err := getState(ctx, q, statePushSeq)
	if err != nil {
		return PushState{}, err
	}
	if st.Seq, err = strconv.Atoi(seq); err != nil {
		return PushState{}, badState(statePushSeq, seq, err)
	}
	pos, err := getState(ctx, q, statePushPos)
	if err != nil {
		return PushState{}, err
	}
	idx, after, ok := strings.Cut(pos, ":")
	if st.Pos.Table, err = strconv.Atoi(idx); err != nil || !ok {
		return PushState{}, badState(statePushPos, pos, errors.New("want table:id"))
	}
	st.Pos.After = after
	final, err := getState(ctx, q, statePushFinal)
	if err != nil {
		return PushState{}, err
	}
	st.Final, st.FinalDigest = final != "", final
	return st, nil
}

// savePushState stores st, to be read back by readPushState.
func savePushState(ctx context.Context, tx *sql.Tx, st PushState) error {
	final := ""
	if st.Final {
		if st.FinalDigest == "" {
			return errors.New("push state: a last batch recorded as sent needs the digest of its body")
		}
		final = st.FinalDigest
	}
	return setStates(ctx, tx, statePushSession, st.Session, statePushSeq, strconv.Itoa(st.Seq),
		statePushFinal, final, statePushPos, fmt.Sprintf("%d:%s", st.Pos.Table, st.Pos.After))
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
	err := db.inTx(ctx, func(tx *sql.Tx) (err error) {
		n, err = db.nextAttempt(ctx, tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("localdb: next push attempt: %w", err)
	}
	return n, nil
}

// nextAttempt stores and returns, in tx, the attempt number after the
// last one stored.
func (db *DB) nextAttempt(ctx context.Context, tx *sql.Tx) (int64, error) {
	cur, err := getState(ctx, tx, statePushAttempt)
	if err != nil {
		return 0, err
	}
	var n int64
	if cur != "" {
		if n, err = strconv.ParseInt(cur, 10, 64); err != nil {
			return 0, fmt.Errorf("%s: %w", db.path, badState(statePushAttempt, cur, err))
		}
	}
	n++
	return n, setState(ctx, tx, statePushAttempt, strconv.FormatInt(n, 10))
}

// BeginPush records a new push session, forgetting any earlier one.
func (s *Syncer) BeginPush(ctx context.Context, session string) error {
	db := s.db
	if err := db.checkOpen("BeginPush"); err != nil {
		return err
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if err := clearSent(ctx, tx); err != nil {
			return err
		}
		return savePushState(ctx, tx, PushState{Session: session})
	})
}

// AbandonPush forgets the push session, for example when the server no
// longer knows it. Rows stay dirty and go up in the next session.
func (s *Syncer) AbandonPush(ctx context.Context) error {
	if err := s.db.checkOpen("AbandonPush"); err != nil {
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
	if pos.Table >= len(db.tables) { // past the last table: nothing to read
		return DirtyBatch{Next: pos}, nil
	}
	// One transaction for the tables passed over on the way: the batch
	// after a push's last is usually none, in every table.
	var b DirtyBatch
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		for ; pos.Table < len(db.tables); pos = (PushPos{Table: pos.Table + 1}) {
			var err error
			if b, err = db.dirtyFrom(ctx, tx, db.tables[pos.Table], pos, limit); err != nil {
				return fmt.Errorf("read dirty %s: %w", db.tables[pos.Table].name, err)
			}
			if len(b.Rows) > 0 {
				return db.lastBatch(ctx, tx, &b, limit)
			}
		}
		b = DirtyBatch{Next: pos}
		return nil
	})
	if err != nil {
		return DirtyBatch{}, fmt.Errorf("localdb: %w", err)
	}
	return b, nil
}

// lastBatch moves b's Next past the last table when b is the push's last
// batch: fewer than limit rows, and no dirty row in the tables after its
// own. The read after it, which a push makes to know that b is its last,
// then reads nothing. A row saved meanwhile waits for the next push, as
// one saved behind a position already read does.
func (db *DB) lastBatch(ctx context.Context, tx *sql.Tx, b *DirtyBatch, limit int) error {
	if len(b.Rows) >= limit {
		return nil
	}
	for _, t := range db.tables[b.Next.Table+1:] {
		var dirty bool
		if err := tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE "_dirty" = 1)`, sqlident.Quote(t.name))).Scan(&dirty); err != nil {
			return fmt.Errorf("read dirty %s: %w", t.name, err)
		}
		if dirty {
			return nil
		}
	}
	b.Next = PushPos{Table: len(db.tables)}
	return nil
}

// dirtyFrom reads in tx up to limit dirty rows of t after pos, stamping
// first the rows that need it.
func (db *DB) dirtyFrom(ctx context.Context, tx *sql.Tx, t *table, pos PushPos, limit int) (DirtyBatch, error) {
	var b DirtyBatch
	err := func() error {
		if err := db.stampRaw(ctx, tx, t); err != nil {
			return err
		}
		if pos.After == "" { // once per push and table
			if err := db.restampInsane(ctx, tx, t); err != nil {
				return err
			}
		}
		// The limit in the text, not bound: see OpenWith.
		rows, err := tx.QueryContext(ctx, fmt.Sprintf(`SELECT %s, "_change", "_changed" FROM %s
			WHERE "_dirty" = 1 AND "id" > ? ORDER BY "id" LIMIT %d`, t.selectCols, sqlident.Quote(t.name), limit), pos.After)
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
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		return attachIncrements(ctx, tx, t, b.Rows)
	}()
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
	return suppressed(ctx, tx, func() error {
		for _, id := range insane {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET "_hlc" = ? WHERE "id" = ?`, sqlident.Quote(t.name)), db.clock.Now(), id); err != nil {
				return fmt.Errorf("restamp: %w", err)
			}
		}
		return setState(ctx, tx, stateClock, db.clock.last())
	})
}

// stampRaw gives a clock stamp to dirty rows written with plain SQL.
func (db *DB) stampRaw(ctx context.Context, tx *sql.Tx, t *table) error {
	// Rows written with plain SQL are rare: look before writing (the
	// partial index of dirty rows answers), so that a push's reads do not
	// write.
	var unstamped bool
	if err := tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE "_dirty" = 1 AND "_hlc" = '')`, sqlident.Quote(t.name))).Scan(&unstamped); err != nil {
		return fmt.Errorf("stamp raw writes: %w", err)
	}
	if !unstamped {
		return nil
	}
	return suppressed(ctx, tx, func() error {
		res, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET "_hlc" = ? WHERE "_dirty" = 1 AND "_hlc" = ''`, sqlident.Quote(t.name)), db.clock.Now())
		if err != nil {
			return fmt.Errorf("stamp raw writes: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return setState(ctx, tx, stateClock, db.clock.last())
		}
		return nil
	})
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

// MarkSent records that the server acknowledged batch b of session
// st.Session, and stores the new push state st, in one transaction: st is
// the state after b, whose number is st.Seq-1 (Seq counts it). With
// st.Final, b is instead about to be sent as the session's last batch,
// with the commit, and st is the state before it: b's number is st.Seq.
// Recording a batch number again replaces the batch recorded under it, as
// sending it again replaces it on the server. A batch of another session
// than the one stored begins that session, as BeginPush does. Whatever the size of b, it
// writes one row (see _tether_sent).
func (s *Syncer) MarkSent(ctx context.Context, b DirtyBatch, st PushState) error {
	if err := s.db.checkOpen("MarkSent"); err != nil {
		return err
	}
	_, err := s.db.markSent(ctx, b, st, false)
	return err
}

// MarkFinal is MarkSent of a last batch (st.Final) that is also the first
// of a run of sends: in the same transaction, it stores and returns a new
// attempt number for it, as NextAttempt does. A push of one batch so
// writes once before it sends.
func (s *Syncer) MarkFinal(ctx context.Context, b DirtyBatch, st PushState) (int64, error) {
	if err := s.db.checkOpen("MarkFinal"); err != nil {
		return 0, err
	}
	if !st.Final {
		return 0, errors.New("localdb: MarkFinal of a batch not recorded as the last (PushState.Final)")
	}
	return s.db.markSent(ctx, b, st, true)
}

// markSent is MarkSent, and with attempt, NextAttempt in the same
// transaction.
func (db *DB) markSent(ctx context.Context, b DirtyBatch, st PushState, attempt bool) (int64, error) {
	seq := st.Seq - 1 // the batch acknowledged; Seq counts it
	if st.Final {
		seq = st.Seq // the batch about to be sent; Seq is still before it
	}
	var n int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// A batch of a session not begun here (BeginPush) begins it: the
		// last batch of a new session, which is also its first.
		cur, err := getState(ctx, tx, statePushSession)
		if err != nil {
			return err
		}
		if cur != st.Session {
			if err := clearSent(ctx, tx); err != nil {
				return err
			}
		}
		if err := recordSent(ctx, tx, seq, b); err != nil {
			return err
		}
		if attempt {
			if n, err = db.nextAttempt(ctx, tx); err != nil {
				return err
			}
		}
		return savePushState(ctx, tx, st)
	})
	return n, err
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
		if err := db.forgetSentFrom(ctx, tx, st.Seq, st.Pos); err != nil {
			return err
		}
		st.Final = false
		return savePushState(ctx, tx, st)
	})
}

// FinishPush applies the server's answer to a committed session: rows
// unchanged since they were read are clean at the new version; every row
// sent takes the version and the writer the server recorded
// (wire.Commit.ModifiedBy), without being downloaded; rows edited
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
	// Foreign keys are not checked: a winning row may reference a row
	// this device gets only with the pull that follows (a task the server
	// moved under a project new to the device), as a pulled page may.
	return db.inTxUnchecked(ctx, c.Applied >= largeRows, func(tx *sql.Tx) error {
		return suppressed(ctx, tx, func() error {
			if err := db.acknowledge(ctx, tx, c.Version, c.ModifiedBy); err != nil {
				return err
			}
			if err := db.ackIncrements(ctx, tx); err != nil {
				return err
			}
			if err := db.settleConflicts(ctx, tx, c.Conflicts); err != nil {
				return err
			}
			if err := db.applyCounted(ctx, tx, c.Counted); err != nil {
				return err
			}
			if err := db.endPush(ctx, tx, c.Version, own); err != nil {
				return err
			}
			return db.expireConflicts(ctx, tx)
		})
	})
}

// settleConflicts logs each conflict and applies the rows the server kept.
func (db *DB) settleConflicts(ctx context.Context, tx *sql.Tx, conflicts []wire.Conflict) error {
	// Every entry first, with the local rows as they stand: applying a
	// winner may remove other rows of the answer (an evicted parent takes
	// its children).
	for _, cf := range conflicts {
		if err := db.logConflict(ctx, tx, cf); err != nil {
			return err
		}
	}
	for _, cf := range conflicts {
		if cf.Winner == wire.WinnerClient {
			continue
		}
		if err := db.applyWinner(ctx, tx, cf.Row); err != nil {
			return err
		}
	}
	return nil
}

// applyWinner stores a row the server kept in a conflict. A row edited
// since it was pushed keeps its edit, now based on the winner's version.
func (db *DB) applyWinner(ctx context.Context, tx *sql.Tx, r wire.Row) error {
	t := db.byName[r.Table]
	if t == nil {
		return fmt.Errorf("conflict on unknown table %q", r.Table)
	}
	if r.Evict { // a refused write of a row this device may not see
		_, err := db.evict(ctx, tx, t, r.ID, 0)
		return err
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

// endPush ends the push session, committed at version, and stores the
// clock.
func (db *DB) endPush(ctx context.Context, tx *sql.Tx, version int64, own bool) error {
	if err := clearSent(ctx, tx); err != nil {
		return err
	}
	// This database holds what it pushed in the session, as the server
	// kept it: the next pull need not bring it back (see OwnSessions).
	session, err := getState(ctx, tx, statePushSession)
	if err != nil {
		return err
	}
	if session != "" && own {
		if _, err := tx.ExecContext(ctx, `INSERT INTO _tether_own (session, version) VALUES (?, ?)`, session, version); err != nil {
			return fmt.Errorf("record own session: %w", err)
		}
	}
	if err := savePushState(ctx, tx, PushState{}); err != nil {
		return err
	}
	return setState(ctx, tx, stateClock, db.clock.last())
}

// expireConflicts removes the closed conflict log entries past their
// retention.
func (db *DB) expireConflicts(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_conflicts WHERE state <> 'open' AND at < ?`,
		entity.FormatTime(db.clock.now().Add(-db.conflictRetention))); err != nil {
		return fmt.Errorf("conflict log retention: %w", err)
	}
	return nil
}
