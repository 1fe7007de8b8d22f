package sqlitedriver

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"
)

// Checkpointer copies the write-ahead log of a database whose writers were
// opened with Config.NoAutoCheckpoint into the database file, in the
// background: the commit that passes the log's threshold no longer waits
// for that copy (and its sync), which with SQLite's automatic checkpoint it
// does. Wrote tells it a transaction committed; it then checkpoints
// (PRAGMA wal_checkpoint(PASSIVE), which neither waits for nor blocks the
// writer or the readers), at most once per CheckpointEvery, and, with an
// idle interval, once per idle interval in any case, for writes it was not
// told of.
//
// While a checkpoint cannot keep up, or a long read keeps it from copying
// the log's newer frames, the log grows as it does with the automatic
// checkpoint; it starts over from its beginning at the first write after
// a checkpoint that copied it all (its file keeps its largest size).
type Checkpointer struct {
	db       *sql.DB
	every    time.Duration
	idle     time.Duration
	onErr    func(error)
	kick     chan struct{}
	stop     context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

// CheckpointEvery is the shortest time between two checkpoints of a
// Checkpointer.
const CheckpointEvery = time.Second

// NewCheckpointer starts checkpointing db, through a connection of its
// pool, when told of a write and, if idle is not 0, at least once per
// idle; onErr, if set, receives the errors of checkpoints (a failed
// checkpoint is tried again at the next write). Close stops it.
func NewCheckpointer(db *sql.DB, idle time.Duration, onErr func(error)) *Checkpointer {
	return newCheckpointer(db, onErr, CheckpointEvery, idle)
}

func newCheckpointer(db *sql.DB, onErr func(error), every, idle time.Duration) *Checkpointer {
	ctx, stop := context.WithCancel(context.Background())
	c := &Checkpointer{db: db, every: every, idle: idle, onErr: onErr,
		kick: make(chan struct{}, 1), stop: stop, done: make(chan struct{})}
	go c.run(ctx)
	return c
}

// Wrote tells the checkpointer that a write transaction committed. It
// does not wait.
func (c *Checkpointer) Wrote() {
	select {
	case c.kick <- struct{}{}:
	default: // a checkpoint is due already
	}
}

// Close stops the checkpointer and waits for a checkpoint under way. The
// last connection to close checkpoints what is left.
func (c *Checkpointer) Close() {
	c.stopOnce.Do(c.stop)
	<-c.done
}

func (c *Checkpointer) run(ctx context.Context) {
	defer close(c.done)
	var idle <-chan time.Time // never, without an idle interval
	var timer *time.Timer
	if c.idle > 0 {
		timer = time.NewTimer(c.idle)
		defer timer.Stop()
		idle = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-idle:
		}
		if err := c.checkpoint(ctx); err != nil && ctx.Err() == nil && c.onErr != nil {
			c.onErr(err)
		}
		if timer != nil {
			timer.Reset(c.idle)
		}
		select { // writes committed meanwhile wait for the next one
		case <-ctx.Done():
			return
		case <-time.After(c.every):
		}
	}
}

// checkpoint copies what it can of the log into the database file.
func (c *Checkpointer) checkpoint(ctx context.Context) error {
	var busy, frames, copied int
	err := c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
