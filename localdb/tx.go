package localdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
)

// The transactions of the store. Every write of the engines runs in one
// of them, so that its rows and the state after them are stored together.

// inTx runs fn in a write transaction.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	return db.runTx(tx, err, fn)
}

// inTxUnchecked runs fn in a write transaction with foreign keys not
// enforced, on the store's unchecked connection (DB.unchecked). Pulled
// rows come in commit order of their latest versions, so a child may
// arrive a page before its parent (a parent updated after its child was
// written); the server's rows are consistent, and the references hold
// again once the pull is complete.
//
// A large transaction (pulled pages, the rows of a large push marked clean)
// does not copy the write-ahead log into the database file on commit, as
// SQLite's automatic checkpoint does once the log passes 1,000 pages: the
// checkpointer does, in the background, after it, or the app's next
// commit, if it comes first.
func (db *DB) inTxUnchecked(ctx context.Context, large bool, fn func(tx *sql.Tx) error) error {
	if !large {
		tx, err := db.unchecked.BeginTx(ctx, nil)
		return db.runTx(tx, err, fn)
	}
	conn, err := db.unchecked.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The pragma is a no-op inside a transaction: set it around one. It
	// leaves the connection's compiled statements as they are.
	// 1000 is SQLite's default, which every connection tether opens has.
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 0`); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn })
		return err
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA wal_autocheckpoint = 1000`); err != nil {
			// Never hand a connection that does not checkpoint back to the pool.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		db.ckpt.Wrote()
	}()
	tx, err := conn.BeginTx(ctx, nil)
	return db.runTx(tx, err, fn)
}

// largeRows is the number of rows from which an engine's write is large
// (see inTxUnchecked): a page or a batch of the default size.
const largeRows = 1000

// runTx runs fn in tx, just begun with error err, and commits it when fn
// succeeds. The conflicts tx learned (see Syncer.Learned) are kept only if
// it committed.
func (db *DB) runTx(tx *sql.Tx, err error, fn func(tx *sql.Tx) error) (rerr error) {
	if err != nil {
		return err
	}
	defer func() { db.learn.end(tx, rerr == nil) }()
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
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

// setSuppress turns the change-tracking triggers off (on) or back on: the
// engines' own writes to synced tables are not local edits.
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

// suppressed runs fn in tx with change tracking suppressed.
func suppressed(ctx context.Context, tx *sql.Tx, fn func() error) error {
	if err := setSuppress(ctx, tx, true); err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	return setSuppress(ctx, tx, false)
}
