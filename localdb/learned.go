package localdb

import (
	"context"
	"database/sql"
	"sync"

	"github.com/tethersync/tether/wire"
)

// The conflicts a device learns otherwise than from a push's answer: a
// pulled row the server rewrote to keep references whole, which names this
// device (a delete undone, a row deleted with the one it referenced), and
// an edit made here to a row removed from the device because its principal
// may no longer see it. The conflict log records them in the transaction
// that applies the change; once that transaction commits, the engines take
// them (Syncer.Learned) to report them to the app, once each.

// maxLearned bounds the learned conflicts held for Learned when nobody
// takes them (engines run without a coordinator): the conflict log keeps
// every one of them anyway.
const maxLearned = 10_000

// learning holds the learned conflicts of the transactions under way, by
// transaction, and those of committed transactions not taken yet.
type learning struct {
	mu      sync.Mutex
	pending map[*sql.Tx][]wire.Conflict
	done    []wire.Conflict
}

// add records cf as learned in tx.
func (l *learning) add(tx *sql.Tx, cf wire.Conflict) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = map[*sql.Tx][]wire.Conflict{}
	}
	l.pending[tx] = append(l.pending[tx], cf)
}

// end ends tx: what it learned is kept when it committed, dropped when not.
func (l *learning) end(tx *sql.Tx, committed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs, ok := l.pending[tx]
	if !ok {
		return
	}
	delete(l.pending, tx)
	if committed {
		l.done = append(l.done, cs...)
		if n := len(l.done) - maxLearned; n > 0 {
			l.done = append([]wire.Conflict(nil), l.done[n:]...)
		}
	}
}

// take returns the learned conflicts of committed transactions, and
// forgets them.
func (l *learning) take() []wire.Conflict {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := l.done
	l.done = nil
	return cs
}

// learnConflict records cf in the conflict log, in tx, as logConflict
// does, and as learned: Learned returns it once tx has committed.
func (db *DB) learnConflict(ctx context.Context, tx *sql.Tx, cf wire.Conflict) error {
	if err := db.logConflict(ctx, tx, cf); err != nil {
		return err
	}
	db.learn.add(tx, cf)
	return nil
}

// Learned returns, once each, the conflicts recorded in the conflict log
// since the last call otherwise than from a push's answer (whose conflicts
// the push engine reports from the answer itself): pulled rows the server
// rewrote to keep references whole, naming this device (strategy
// wire.StrategyReference: a delete undone, a row deleted with the one it
// referenced), and edits made here to rows removed from the device because
// its principal may no longer see them (strategy wire.StrategyForbidden).
// Each has its Reason; Row is the row as the server holds it. A conflict
// is returned only after the transaction that recorded it committed, and
// never again: neither on the next call, nor when a page set aside is
// applied later, nor by a rebuild. At most the latest 10,000 are held
// between calls; the conflict log keeps them all (see DB.Conflicts).
//
// Learned is safe for concurrent use; the engines call it after each step
// that applies rows (push.Store, pull.Store).
func (s *Syncer) Learned() []wire.Conflict {
	return s.db.learn.take()
}
