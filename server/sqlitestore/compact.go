package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"
)

// CompactPages is the most free pages one sweep gives back to the file
// system (32 MiB of 4 KiB pages), in steps of compactStep pages: each step
// holds the single writer for a few tens of milliseconds, and other
// commits go between steps. The next sweep goes on.
const CompactPages = 8192

const compactStep = 1024

// Compact implements sqlstore.Compactor: PRAGMA incremental_vacuum of up
// to CompactPages free pages, then a passive checkpoint, which shrinks the
// file (in WAL mode the file shrinks when the moved pages are checkpointed
// into it). A database still in auto_vacuum NONE has nothing to give.
func (dialect) Compact(ctx context.Context, db *sql.DB) (int, error) {
	done := 0
	for done < CompactPages {
		var free int
		if err := db.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil {
			return done, fmt.Errorf("freelist count: %w", err)
		}
		if free == 0 {
			break
		}
		n, err := vacuumStep(ctx, db, min(free, compactStep, CompactPages-done))
		done += n
		if err != nil {
			return done, err
		}
		if n == 0 { // not auto_vacuum INCREMENTAL
			return done, nil
		}
	}
	if done > 0 {
		if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
			return done, fmt.Errorf("checkpoint: %w", err)
		}
	}
	return done, nil
}

// vacuumStep frees up to n pages in one write transaction. Each step of
// incremental_vacuum frees one page and yields a row: the rows are read to
// the end (Exec would step once).
func vacuumStep(ctx context.Context, db *sql.DB, n int) (int, error) {
	rows, err := db.QueryContext(ctx, fmt.Sprintf(`PRAGMA incremental_vacuum(%d)`, n))
	if err != nil {
		return 0, fmt.Errorf("incremental vacuum: %w", err)
	}
	freed := 0
	for rows.Next() {
		freed++
	}
	if err := rows.Close(); err != nil {
		return freed, fmt.Errorf("incremental vacuum: %w", err)
	}
	return freed, rows.Err()
}

// incremental makes the database at db's file auto_vacuum INCREMENTAL, so
// that the sweep can give freed pages back (Compact). A new database is
// already: the connection sets it before the first table. An existing
// database created before, in auto_vacuum NONE, is converted once, by a
// VACUUM that rewrites the whole file (it needs free disk space as large
// as the database, and holds the writer while it runs).
func incremental(ctx context.Context, db *sql.DB, log *slog.Logger, path string) error {
	var mode int
	if err := db.QueryRowContext(ctx, `PRAGMA auto_vacuum`).Scan(&mode); err != nil {
		return fmt.Errorf("auto_vacuum: %w", err)
	}
	if mode == 2 {
		return nil
	}
	log.Info("sqlitestore: converting the database to auto_vacuum=INCREMENTAL, once: VACUUM rewrites the file", "path", path)
	start := time.Now()
	if _, err := db.ExecContext(ctx, `PRAGMA auto_vacuum = INCREMENTAL`); err != nil {
		return fmt.Errorf("auto_vacuum: %w", err)
	}
	if _, err := db.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("convert to auto_vacuum INCREMENTAL: %w", err)
	}
	log.Info("sqlitestore: converted the database to auto_vacuum=INCREMENTAL", "path", path, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
