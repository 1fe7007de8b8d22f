package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Runs of sends
//
// A device sends a session's batches in runs: a push, or the sends after a
// failure, each numbered by its attempt (wire.BatchAttempt, growing) and
// starting at the batch after those the device holds as acknowledged
// (wire.BatchBase). Up to two batches of a run are on the wire at once, so
// the server may see them out of order, and requests of an earlier run may
// arrive late (a proxy that retried them). Three rules keep a session's
// staged batches the device's own:
//
//   - the newest run of a session is the largest attempt among its staged
//     batches (stageTx writes each batch's attempt, in the transaction
//     that stages it); a batch of an earlier run is refused
//     (errStaleRun) and changes nothing;
//   - the first batch of a newer run that is staged drops the batches
//     earlier runs staged from the run's base on: the device never
//     recorded their acknowledgement, and sends them again in the run if
//     it still has them;
//   - a commit takes batches 0..N only when each of them is staged
//     (contiguous): a lost batch is never committed over (errHole).

// errStaleRun is a batch of an earlier run than the session's newest.
var errStaleRun = fmt.Errorf("a later run of sends has begun: %w", wire.ErrConflict)

// errHole is a commit of a session with a batch missing before its last.
var errHole = fmt.Errorf("a batch is missing: %w", wire.ErrConflict)

// enterRun applies the run rules to batch seq of run attempt, whose base
// is base (the batches before it the device holds as acknowledged), before
// it is staged in tx: it refuses a batch of an earlier run than the
// session's newest, and drops what earlier runs staged from base on when
// the batch begins a newer one. Attempt 0 (a device that does not number
// its attempts) is never newer than a run.
func (s *Store) enterRun(ctx context.Context, tx *sql.Tx, tenant, session string, seq int, attempt int64, base int) error {
	if attempt == 0 {
		return nil // nothing numbered: the checks below cannot refuse it
	}
	var newest int64
	var top int // the last batch staged, -1 for none
	if err := tx.QueryRowContext(ctx, s.q(`SELECT coalesce(max(attempt), 0), coalesce(max(seq), -1) FROM _tether_batches WHERE tenant = ? AND session = ?`),
		tenant, session).Scan(&newest, &top); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	switch {
	case attempt < newest:
		return fmt.Errorf("batch %d of session %s is of run %d, and run %d has staged batches since: refused, nothing dropped: %w",
			seq, session, attempt, newest, errStaleRun)
	}
	base = min(max(base, 0), seq)
	if attempt == newest || top < base {
		return nil // this run's, or nothing to drop
	}
	// Every batch staged is of an earlier run than this one (newest is
	// the largest attempt among them).
	return s.dropFrom(ctx, tx, tenant, session, base)
}

// contiguous checks, before a session is committed in tx, that its staged
// batches are 0..N with none missing: a batch lost on the way while a
// later one was staged is not committed over (errHole, naming the first
// missing batch). last, when not nil, is the batch whose request commits
// the session, staged already: none may be staged after it.
func (s *Store) contiguous(ctx context.Context, tx *sql.Tx, tenant, session string, last *server.LastBatch) error {
	var n, top int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*), coalesce(max(seq), -1) FROM _tether_batches WHERE tenant = ? AND session = ?`),
		tenant, session).Scan(&n, &top); err != nil {
		return fmt.Errorf("batches: %w", err)
	}
	if n == top+1 && (last == nil || top <= last.Seq) {
		return nil
	}
	if last != nil && top > last.Seq {
		return fmt.Errorf("session %s holds batch %d, after batch %d sent as its last: refused, commit with the batches acknowledged: %w",
			session, top, last.Seq, errHole)
	}
	rows, err := tx.QueryContext(ctx, s.q(`SELECT seq FROM _tether_batches WHERE tenant = ? AND session = ? ORDER BY seq`), tenant, session)
	if err != nil {
		return fmt.Errorf("batches: %w", err)
	}
	defer rows.Close()
	want := 0
	for rows.Next() {
		var seq int
		if err := rows.Scan(&seq); err != nil {
			return fmt.Errorf("batches: %w", err)
		}
		if seq != want {
			break
		}
		want++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("batches: %w", err)
	}
	return fmt.Errorf("session %s holds batches up to %d but not batch %d: refused, send batch %d again: %w",
		session, top, want, want, errHole)
}
