package localdb

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/wire"
)

// A device whose pull cursor is older than the server's history (the
// server purged deletions after it: wire.ErrHistoryPurged) rebuilds its
// clean rows from a snapshot of the server's (wire.Snapshot), and keeps
// every row it edited and has not pushed yet:
//
//	BeginRebuild                 marks every clean row stale
//	ApplySnapshot, page by page  writes the server's rows, clean and fresh
//	FinishRebuild                removes the rows still stale (the server
//	                             deleted them, or they left the device's
//	                             scopes), and pulls on from Resume
//
// Each step is one transaction and the snapshot's position is stored with
// its rows, so an interrupted rebuild goes on where it stopped
// (RebuildCursor).

// RebuildCursor reports whether a rebuild is under way, and the snapshot
// position to go on from ("" for the first page).
func (s *Syncer) RebuildCursor(ctx context.Context) (string, bool, error) {
	db := s.db
	if err := db.checkOpen("RebuildCursor"); err != nil {
		return "", false, err
	}
	c, err := getState(ctx, db.sql, stateRebuild)
	if err != nil || c == "" {
		return "", false, err
	}
	if c == "-" {
		c = ""
	}
	return c, true, nil
}

// BeginRebuild starts a rebuild: every clean row is marked stale, until a
// snapshot page brings it again. Rows edited here (dirty) are left alone.
func (s *Syncer) BeginRebuild(ctx context.Context) error {
	db := s.db
	if err := db.checkOpen("BeginRebuild"); err != nil {
		return err
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if err := setSuppress(ctx, tx, true); err != nil {
			return err
		}
		for _, t := range db.tables {
			if _, err := tx.ExecContext(ctx, `UPDATE `+sqlident.Quote(t.name)+` SET "_stale" = 1 WHERE "_dirty" = 0`); err != nil {
				return fmt.Errorf("localdb: begin rebuild %s: %w", t.name, err)
			}
		}
		if err := setState(ctx, tx, stateRebuild, "-"); err != nil {
			return err
		}
		// A partial page of a pull set aside is superseded: the
		// snapshot brings its rows, but not what they told this device
		// (a delete of its undone, a row of its deleted with its parent):
		// that goes into the conflict log now, as the pull would have.
		if err := unstash(ctx, tx, func(rows []wire.Row) error { return db.learnDropped(ctx, tx, rows) }); err != nil {
			return err
		}
		return setSuppress(ctx, tx, false)
	})
}

// ApplySnapshot sets a page of the snapshot aside, on disk, and stores
// the position after it in the same transaction: FinishRebuild writes
// every page at once, so that an app reading the database sees the old
// rows until the new ones are whole. It returns the number of rows set
// aside.
func (s *Syncer) ApplySnapshot(ctx context.Context, rows []wire.Row, cursor string) (int, error) {
	db := s.db
	if err := db.checkOpen("ApplySnapshot"); err != nil {
		return 0, err
	}
	if err := db.setAside(ctx, wire.Changes{Changes: rows}, stateRebuild, cursor); err != nil {
		return 0, fmt.Errorf("localdb: apply snapshot: %w", err)
	}
	return len(rows), nil
}

// FinishRebuild ends a rebuild, in one transaction: it writes the
// snapshot's rows, clean, over every clean row (a row edited here keeps
// its edit); the rows still stale, which the server no longer holds (or no
// longer lets this device see), are removed, without anything pushed: for
// good, or as clean tombstones where rows here still reference them
// (references stay whole); the pull cursor becomes resume. It returns the
// number of rows removed.
func (s *Syncer) FinishRebuild(ctx context.Context, resume string) (int, error) {
	db := s.db
	if err := db.checkOpen("FinishRebuild"); err != nil {
		return 0, err
	}
	deleted := 0
	_, err := db.writeRemote(ctx, nil, false, func(t *table) string { return t.snapshotTail }, func(tx *sql.Tx) error {
		// Children first: a stale row nothing here references goes
		// for good (the server deleted it, or its user may no longer see
		// it); one a row here still references stays as a clean tombstone.
		for i := len(db.tables) - 1; i >= 0; i-- {
			t := db.tables[i]
			q := `DELETE FROM ` + sqlident.Quote(t.name) + ` WHERE "_stale" = 1 AND "_dirty" = 0`
			for _, c := range db.tables {
				for _, col := range c.cols {
					if col.Ref == t.name {
						q += ` AND NOT EXISTS (SELECT 1 FROM ` + sqlident.Quote(c.name) + ` AS r WHERE r.` + sqlident.Quote(col.Name) + ` = ` + sqlident.Quote(t.name) + `."id")`
					}
				}
			}
			res, err := tx.ExecContext(ctx, q)
			if err != nil {
				return fmt.Errorf("finish rebuild %s: %w", t.name, err)
			}
			n, _ := res.RowsAffected()
			deleted += int(n)
		}
		for _, t := range db.tables {
			res, err := tx.ExecContext(ctx, `UPDATE `+sqlident.Quote(t.name)+` SET "_deleted" = 1, "_stale" = 0 WHERE "_stale" = 1 AND "_dirty" = 0`)
			if err != nil {
				return fmt.Errorf("finish rebuild %s: %w", t.name, err)
			}
			n, _ := res.RowsAffected()
			deleted += int(n)
			if _, err := tx.ExecContext(ctx, `UPDATE `+sqlident.Quote(t.name)+` SET "_stale" = 0 WHERE "_stale" = 1`); err != nil {
				return err
			}
		}
		if err := setState(ctx, tx, stateCursor, resume); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_state WHERE key = ?`, stateRebuild); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM _tether_own`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("localdb: finish rebuild: %w", err)
	}
	return deleted, nil
}

// learnDropped records, as learned, the conflicts that rows of a pull
// set aside and dropped unapplied told this device of (see remoteRow).
func (db *DB) learnDropped(ctx context.Context, tx *sql.Tx, rows []wire.Row) error {
	for _, r := range rows {
		t := db.byName[r.Table]
		if t == nil || r.Evict || r.Notify != db.device || r.Reason == "" {
			continue
		}
		if r.Deleted {
			if keep, err := db.holdsOrReferenced(ctx, tx, t, r.ID); err != nil || !keep {
				if err != nil {
					return err
				}
				continue
			}
		}
		cf := wire.Conflict{Table: r.Table, ID: r.ID, Strategy: wire.StrategyReference, Winner: wire.WinnerServer, Row: r, Reason: r.Reason}
		if err := db.learnConflict(ctx, tx, cf); err != nil {
			return err
		}
	}
	return nil
}
