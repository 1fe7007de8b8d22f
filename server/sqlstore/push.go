package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// OpenSession implements server.Store.
func (s *Store) OpenSession(ctx context.Context, p server.Principal, device, session string, lim server.Limits) (string, error) {
	lim = lim.WithDefaults()
	id := session
	if id == "" {
		id = uuid.NewString()
	}
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		_, err := s.openTx(ctx, tx, p, device, id, session != "", lim)
		return err
	})
	if err != nil && !errors.Is(err, errOpened) {
		return "", fmt.Errorf("open session: %w", err)
	}
	if err == nil {
		server.ObserverOf(ctx).SessionOpened(p.Tenant)
	}
	return id, nil
}

// openTx opens session id of the device in tx, and returns the id of the
// app schema the session writes with (see liveSession); named reports
// that the device chose the id, which may then be open already
// (errOpened).
func (s *Store) openTx(ctx context.Context, tx *sql.Tx, p server.Principal, device, id string, named bool, lim server.Limits) (string, error) {
	// The session writes the columns of the app version the device has
	// now, whatever it registers later.
	var schema string
	// Locked: a revocation (SetDeviceRevoked) under way is waited for,
	// and one that comes while this opens waits for the session to be
	// committed, then discards it with the device's other open ones.
	var revoked any
	err := tx.QueryRowContext(ctx, s.q(`SELECT app_schema, revoked FROM _tether_devices WHERE tenant = ? AND device = ?`+s.d.ForUpdate()),
		p.Tenant, device).Scan(&schema, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("device %s is not registered for this tenant: %w", device, wire.ErrDeviceUnknown)
	}
	if err != nil {
		return "", err
	}
	if truth(revoked) { // revoked since the request's check (SetDeviceRevoked)
		return "", errRevoked(device)
	}
	if named {
		var dev, user string
		var committed any
		err := tx.QueryRowContext(ctx, s.q(`SELECT device, user_name, committed_at FROM _tether_sessions WHERE tenant = ? AND id = ?`+s.d.ForUpdate()),
			p.Tenant, id).Scan(&dev, &user, &committed)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return "", err
		case dev == device && user == p.User && committed == nil:
			return "", errOpened // opened before; the answer was lost
		case dev == device && user == p.User:
			return "", errCommitted
		default:
			return "", fmt.Errorf("session id %s is already in use: %w", id, wire.ErrConflict)
		}
	}
	idle, err := s.strings(ctx, tx, `SELECT id FROM _tether_sessions WHERE tenant = ? AND device = ? AND user_name = ? AND committed_at IS NULL
		AND coalesce(touched_at, created_at) < ?`+s.d.ForUpdate(), p.Tenant, device, p.User, s.d.Time(s.now().Add(-lim.SessionIdle)))
	if err != nil {
		return "", err
	}
	for _, old := range idle {
		if err := s.dropSession(ctx, tx, p.Tenant, old); err != nil {
			return "", err
		}
	}
	var open int
	err = tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM _tether_sessions WHERE tenant = ? AND device = ? AND user_name = ? AND committed_at IS NULL`),
		p.Tenant, device, p.User).Scan(&open)
	if err != nil {
		return "", err
	}
	if open >= lim.MaxOpenSessions { // per user: no one fills another's quota
		return "", fmt.Errorf("user %s has %d open sessions on device %s, the limit: commit one, or wait %v for an idle one to expire: %w",
			p.User, lim.MaxOpenSessions, device, lim.SessionIdle, wire.ErrConflict)
	}
	now := s.d.Time(s.now())
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO _tether_sessions (tenant, id, device, user_name, created_at, touched_at, app_schema)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), p.Tenant, id, device, p.User, now, now, schema)
	return schema, err
}

// errOpened ends the transaction of an OpenSession that finds the session
// already open, with nothing to write.
var errOpened = errors.New("session already open")

// errStaleAttempt is a batch older than the copy staged (see stageTx).
var errStaleAttempt = fmt.Errorf("a later attempt staged it: %w", wire.ErrConflict)

// errCommitted is an OpenSession of a session the same device and user
// committed already: a retry of the request that committed it, for Push.
var errCommitted = fmt.Errorf("session already committed: %w", wire.ErrConflict)

// dropFrom deletes the batches of an uncommitted session from batch seq on,
// and the rows they staged.
func (s *Store) dropFrom(ctx context.Context, tx *sql.Tx, tenant, session string, seq int) error {
	tables, err := s.strings(ctx, tx, `SELECT DISTINCT tbl FROM _tether_batches WHERE tenant = ? AND session = ? AND seq >= ?`, tenant, session, seq)
	if err != nil {
		return fmt.Errorf("drop stale batches: %w", err)
	}
	for _, name := range tables {
		if t := s.byName[name]; t != nil {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ? AND "_seq" >= ?`), tenant, session, seq); err != nil {
				return fmt.Errorf("drop stale batches: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_batches WHERE tenant = ? AND session = ? AND seq >= ?`), tenant, session, seq); err != nil {
		return fmt.Errorf("drop stale batches: %w", err)
	}
	return nil
}

// dropSession deletes an uncommitted session and everything it staged.
func (s *Store) dropSession(ctx context.Context, tx *sql.Tx, tenant, id string) error {
	for _, t := range s.tables {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ?`), tenant, id); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_batches WHERE tenant = ? AND session = ?`), tenant, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_sessions WHERE tenant = ? AND id = ? AND committed_at IS NULL`), tenant, id)
	return err
}

// liveSession loads a session of the principal's device for a write in tx,
// locking it: whether it is committed and its stored answer. A session of
// another tenant or device is not found; an expired one is dropped, in a
// transaction of its own, and reported as not found.
func (s *Store) liveSession(ctx context.Context, tx *sql.Tx, p server.Principal, device, id string, lim server.Limits) (committed bool, result, schema string, err error) {
	var dev, user string
	var res sql.NullString
	var touched any
	err = tx.QueryRowContext(ctx, s.q(`SELECT device, user_name, result, coalesce(touched_at, created_at), app_schema FROM _tether_sessions
		WHERE tenant = ? AND id = ?`+s.d.ForUpdate()), p.Tenant, id).Scan(&dev, &user, &res, &touched, &schema)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && dev != device) {
		return false, "", "", fmt.Errorf("unknown session %q: %w", id, wire.ErrNotFound)
	}
	if err != nil {
		return false, "", "", fmt.Errorf("session %s: %w", id, err)
	}
	if user != p.User { // a session is its user's: no one else fills or commits it (G14)
		return false, "", "", fmt.Errorf("session %s was opened by another user: %w", id, wire.ErrForbidden)
	}
	if res.Valid {
		return true, res.String, schema, nil
	}
	at, err := timeOf(touched)
	if err != nil {
		return false, "", "", fmt.Errorf("session %s: %w", id, err)
	}
	if at.Before(s.now().Add(-lim.SessionIdle)) {
		if err := s.dropSession(ctx, tx, p.Tenant, id); err != nil {
			return false, "", "", fmt.Errorf("expire session %s: %w", id, err)
		}
		return false, "", "", &commitThen{fmt.Errorf("session %s expired after %v without a batch; its staged rows were discarded: %w",
			id, lim.SessionIdle, wire.ErrNotFound)}
	}
	return false, "", schema, nil
}

// bounded checks that a batch of rows and size bytes fits its session's
// and its tenant's bounds, with what they staged already.
func (s *Store) bounded(ctx context.Context, tx *sql.Tx, p server.Principal, session string, rows []wire.Row, size int64, lim server.Limits) error {
	var n, bytes, tenant int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT coalesce(sum("rows"), 0), coalesce(sum(bytes), 0) FROM _tether_batches WHERE tenant = ? AND session = ?`),
		p.Tenant, session).Scan(&n, &bytes)
	if err != nil {
		return err
	}
	if err := sessionBounds(session, n, bytes, rows, size, lim); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, s.q(`SELECT coalesce(sum(bytes), 0) FROM _tether_batches WHERE tenant = ?`), p.Tenant).Scan(&tenant); err != nil {
		return err
	}
	if tenant+size > lim.MaxTenantStagedBytes {
		return fmt.Errorf("the tenant's open sessions hold %d bytes, the limit is %d (MaxTenantStagedBytes): try again once sessions commit or expire: %w",
			tenant, lim.MaxTenantStagedBytes, wire.ErrRateLimited)
	}
	return nil
}

// sessionBounds checks that a batch of rows and size bytes fits its
// session, which holds n rows and bytes bytes already.
func sessionBounds(session string, n, bytes int64, rows []wire.Row, size int64, lim server.Limits) error {
	if n+int64(len(rows)) > int64(lim.MaxSessionRows) || bytes+size > lim.MaxSessionBytes {
		return fmt.Errorf("session %s holds %d rows and %d bytes: with %d rows and %d bytes more it would pass the limit of %d rows or %d bytes (MaxSessionRows, MaxSessionBytes): commit it and go on in a new session: %w",
			session, n, bytes, len(rows), size, lim.MaxSessionRows, lim.MaxSessionBytes, wire.ErrSessionFull)
	}
	return nil
}

// Push implements server.Store: it opens the session if asked, stages the
// batch and commits the session if asked, in one transaction.
func (s *Store) Push(ctx context.Context, p server.Principal, device, session string, seq int, rows []wire.Row, o server.PushOptions) (*wire.Commit, error) {
	lim := o.Limits.WithDefaults()
	t := s.byName[rows[0].Table]
	if t == nil {
		return nil, fmt.Errorf("stage batch %d: unknown table %q: %w", seq, rows[0].Table, wire.ErrBadRequest)
	}
	size := int64(0)
	for _, r := range rows {
		size += int64(r.Size())
	}
	var c *wire.Commit
	fresh, opened := false, false
	tries := 0
	start := time.Now()
	if o.Commit != nil && seq > 0 { // the batches staged before this one
		s.analyzeStaged(ctx, p.Tenant, session)
	}
	err := s.inTx(ctx, func(conn *sql.Conn, tx *sql.Tx) error {
		c, fresh, opened = nil, false, false // a retried transaction starts over
		var schema string                    // the app schema the session writes with
		ctx := captureOnce(ctx, &tries)
		if o.Open {
			// A request that commits may come twice (see
			// server.PushOptions): its session is committed then, which
			// the commit below answers.
			var err error
			schema, err = s.openTx(ctx, tx, p, device, session, true, lim)
			if err != nil && !errors.Is(err, errOpened) && (o.Commit == nil || !errors.Is(err, errCommitted)) {
				return fmt.Errorf("open session: %w", err)
			}
			opened = err == nil
		}
		// A session this request opens and commits, with its first batch:
		// nothing was staged in it before, and what it stages is applied
		// and emptied in this transaction (see stageTx, commitTx).
		var single *Table
		if opened && o.Commit != nil && seq == 0 {
			single = t
		}
		var committed bool
		var result string
		if !opened { // a session opened just now is live, uncommitted, and the principal's
			var err error
			if committed, result, schema, err = s.liveSession(ctx, tx, p, device, session, lim); err != nil {
				return err
			}
		}
		if committed {
			if o.Commit == nil {
				return fmt.Errorf("session %s is already committed: %w", session, wire.ErrConflict)
			}
			c = &wire.Commit{}
			return storedAnswer(result, session, o.Commit, c)
		}
		cctx := ctx
		if o.Commit != nil && ctx.Value(capturedKey{}) == nil { // before the rows are staged: see captureFirst
			var err error
			if cctx, err = s.captureFirst(ctx, tx, p.Tenant); err != nil {
				return err
			}
		}
		if single == nil { // a single batch has no earlier run to refuse or drop
			if err := s.enterRun(ctx, tx, p.Tenant, session, seq, o.Attempt, o.Base); err != nil { // see runs.go
				return err
			}
		}
		if err := s.stageTx(ctx, conn, tx, p, session, seq, o.Attempt, t, rows, size, schema, lim, single != nil); err != nil {
			return err
		}
		if o.Commit == nil {
			return nil
		}
		c, fresh = &wire.Commit{}, true
		return s.commitTx(cctx, tx, p, device, session, o.Resolve, o.Commit, single, c)
	})
	if err != nil {
		if errors.Is(err, wire.ErrNotFound) || errors.Is(err, wire.ErrConflict) {
			return nil, err
		}
		return nil, fmt.Errorf("stage batch %d of session %s: %w", seq, session, err)
	}
	if opened {
		server.ObserverOf(ctx).SessionOpened(p.Tenant)
	}
	if c != nil {
		s.committed(p, device, *c, fresh)
		if fresh {
			observeCommit(ctx, p, device, *c, start)
		}
	}
	return c, nil
}

// storedAnswer reads the answer a committed session keeps into c: for a
// commit that carries the last batch, only if it is the batch that
// committed the session.
func storedAnswer(result, session string, last *server.LastBatch, c *wire.Commit) error {
	var stored storedCommit
	if err := json.Unmarshal([]byte(result), &stored); err != nil {
		return fmt.Errorf("stored result: %w", err)
	}
	if last != nil && (stored.Last == nil || *stored.Last != *last) {
		return fmt.Errorf("session %s is already committed, without batch %d as sent now: %w", session, last.Seq, wire.ErrConflict)
	}
	*c = stored.Commit
	return nil
}

// stageTx stages a batch of rows of table t, size bytes as RowSize counts
// them, in an open session whose device has the schema of id schema ("":
// the server's). With single, the batch is the first and last of a session
// opened in tx, which commits it in tx (see commitTx): it is staged
// without a record in _tether_batches, which nothing would read after the
// commit, and bounded by the session's limits alone, since it leaves
// nothing staged.
func (s *Store) stageTx(ctx context.Context, conn *sql.Conn, tx *sql.Tx, p server.Principal, session string, seq int, attempt int64, t *Table, rows []wire.Row, size int64, schema string, lim server.Limits, single bool) error {
	if err := s.deviceColumns(ctx, tx, p.Tenant, t, schema, rows); err != nil {
		return err
	}
	if single {
		if err := sessionBounds(session, 0, 0, rows, size, lim); err != nil {
			return err
		}
		return s.d.Stage(ctx, conn, tx, t, p.Tenant, session, seq, rows)
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE _tether_sessions SET touched_at = ? WHERE tenant = ? AND id = ?`),
		s.d.Time(s.now()), p.Tenant, session); err != nil {
		return err
	}
	// A re-sent batch replaces the first one (G3), unless it comes from
	// an earlier attempt than the copy staged: a request delayed on the
	// way (a proxy that retried it) must not undo a newer one.
	var old string
	var staged int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT tbl, attempt FROM _tether_batches WHERE tenant = ? AND session = ? AND seq = ?`),
		p.Tenant, session, seq).Scan(&old, &staged)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	case attempt < staged:
		return fmt.Errorf("batch %d of session %s was staged again by a later attempt (%d, this is %d): %w", seq, session, staged, attempt, errStaleAttempt)
	default:
		if ot := s.byName[old]; ot != nil {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+ot.Stage+` WHERE "_tenant" = ? AND "_session" = ? AND "_seq" = ?`),
				p.Tenant, session, seq); err != nil {
				return fmt.Errorf("replace: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_batches WHERE tenant = ? AND session = ? AND seq = ?`),
			p.Tenant, session, seq); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
	}
	if err := s.bounded(ctx, tx, p, session, rows, size, lim); err != nil {
		return err
	}
	if err := s.d.Stage(ctx, conn, tx, t, p.Tenant, session, seq, rows); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO _tether_batches (tenant, session, seq, tbl, "rows", bytes, attempt) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		p.Tenant, session, seq, t.schema.Name, len(rows), size, attempt)
	return err
}
