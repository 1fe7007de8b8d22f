package localdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tethersync/tether/internal/sqlident"
)

// Wipe erases the database file and closes db: it is what a device does
// when the server refuses it as revoked (coordinator.ErrRevoked), a lost
// or stolen device whose data must not stay on it.
//
// It drops every table, view, index and trigger of the file: the synced
// rows and their tombstones, tether's bookkeeping (the device id and key,
// the pull cursor, the push queue, the conflict log, the stash of a pull
// under way, the clock) and the app's own tables, and resets PRAGMA
// user_version to 0. With secure_delete on, freed pages are overwritten
// with zeros; a VACUUM then rebuilds the file with nothing in it, and a
// checkpoint of the write-ahead log, TRUNCATE, copies that into the file
// and empties the log. What remains is an empty SQLite file (its header
// page), and an empty -wal file while another connection holds the file
// open; none of the data's bytes are in either. The file is not removed:
// the app may open it again (Open), which starts a new, empty database
// with a new device id: one the revocation does not cover, which syncs
// the tenant's rows again with the token the device holds. An app that
// wipes on revocation keeps a mark outside the file (written before
// Wipe) and checks it at start, before it syncs. What Wipe cannot reach: copies made elsewhere
// (backups, the app's own exports) and the blocks of the storage device
// underneath that the file system freed; full-disk encryption covers
// those.
//
// The handle must not be used after Wipe but to Close it, which does
// nothing; every method returns an error wrapping ErrClosed. Wipe waits
// up to Options.BusyTimeout for other connections to the file (another
// process, a query of the app still running) to finish what they read.
// Wiping a closed DB returns an error wrapping ErrClosed. On an error
// the file may be wiped in part, and db is closed all the same: call Wipe
// on a DB opened again.
func (db *DB) Wipe(ctx context.Context) error {
	if !db.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("localdb: wipe %s: %w", db.path, ErrClosed)
	}
	err := db.wipe(ctx)
	if cerr := db.closeAll(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("localdb: wipe %s: %w", db.path, err)
	}
	return nil
}

// wipe drops everything on one connection, vacuums and truncates the
// write-ahead log.
func (db *DB) wipe(ctx context.Context) error {
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Per connection, and outside a transaction: dropping a parent
	// table does not check its children, which go too.
	for _, p := range []string{`PRAGMA secure_delete = ON`, `PRAGMA foreign_keys = OFF`} {
		if _, err := conn.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	if err := dropAll(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	var busy, frames, done int
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("checkpoint: another connection is reading the file: its log still holds the data")
	}
	return nil
}

// dropAll drops, in one transaction, every view and table of the file
// (their indexes and triggers go with them) and the statistics tables,
// empties sqlite_sequence and resets user_version.
func dropAll(ctx context.Context, conn *sql.Conn) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var drops []string
	rows, err := tx.QueryContext(ctx, `SELECT type, name FROM sqlite_schema
		WHERE type IN ('view', 'table') AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY type = 'table'`)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	for rows.Next() {
		var typ, name string
		if err := rows.Scan(&typ, &name); err != nil {
			rows.Close()
			return fmt.Errorf("list tables: %w", err)
		}
		kind := "TABLE"
		if typ == "view" {
			kind = "VIEW"
		}
		drops = append(drops, "DROP "+kind+" "+sqlident.Quote(name))
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	var stats []string // sqlite_stat1 and sqlite_stat4 (samples of indexed values), after ANALYZE
	for _, name := range []string{"sqlite_stat1", "sqlite_stat4"} {
		stats = append(stats, "DROP TABLE IF EXISTS "+name)
	}
	for _, q := range append(drops, stats...) {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	var seq int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_sequence'`).Scan(&seq); err != nil {
		return fmt.Errorf("sqlite_sequence: %w", err)
	}
	if seq > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sqlite_sequence`); err != nil {
			return fmt.Errorf("sqlite_sequence: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `PRAGMA user_version = 0`); err != nil {
		return fmt.Errorf("user_version: %w", err)
	}
	return tx.Commit()
}
