package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/server/sqlstore"
)

// Store is the embedded server store.
type Store = sqlstore.Store

// Options configure Open. The zero value works.
type Options struct {
	// Now is the clock of the store's time-based rules: session expiry,
	// device activity, retention and the times it records. Default
	// time.Now; tests set it to move time without waiting.
	Now func() time.Time
	// Logger receives the one line of a conversion to auto_vacuum
	// INCREMENTAL (see Open). Default slog.Default().
	Logger *slog.Logger
	// KeepAutoVacuum leaves a database in auto_vacuum NONE as it is,
	// without the VACUUM that converts it (see Open): for a tool that
	// opens a server's database while the server may run (tether-admin),
	// which must not rewrite the file and hold its writer meanwhile.
	// Store.Sweep then gives no space back. Default false: converted.
	KeepAutoVacuum bool
}

// checkpointIdle is the longest time between two checkpoints of the
// store's write-ahead log, for writes its own commits did not tell of (see
// Open).
const checkpointIdle = 30 * time.Second

// Open opens or creates the server database at path with tables for
// schema. It adds missing tables and columns and never drops any.
//
// The store's commits leave the write-ahead log to a background
// checkpointer (sqlitedriver.Checkpointer), which copies it into the
// database file after a commit, at most once a second, and at least once
// every 30 s.
//
// A new database is created in auto_vacuum INCREMENTAL, so that the
// server's sweep gives the space of deleted rows back to the file system
// (Store.Sweep). A database created before that, in auto_vacuum NONE, is
// converted the first time Open opens it, by one VACUUM that rewrites the
// file: it needs free disk space as large as the database and takes time
// in proportion to it (see docs/operations.md).
func Open(path string, schema entity.Schema, opts Options) (*Store, error) {
	open := func(txlock string, noCheckpoint bool) (*sql.DB, error) {
		return sqlitedriver.Open(path, sqlitedriver.Config{WAL: true, BusyTimeout: 10 * time.Second,
			TxLock: txlock, Synchronous: "NORMAL", StmtCache: 64, Stable: true, AutoVacuum: "INCREMENTAL", NoAutoCheckpoint: noCheckpoint})
	}
	// The writer's commits do not checkpoint: a checkpointer does, in the
	// background, through a reader (see sqlitedriver.Checkpointer).
	w, err := open("immediate", true)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1) // the single writer
	r, err := open("deferred", false)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	log := cmp.Or(opts.Logger, slog.Default())
	// With KeepAutoVacuum, a database not created yet is incremental
	// anyway: the DSN's _auto_vacuum applies before its first table.
	if !opts.KeepAutoVacuum {
		if err := incremental(context.Background(), w, log, path); err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
		}
	}
	// A back office's SQL (Store.DB) is planned as SQLite plans by
	// default; the store's own pools plan without bound values (Stable), so
	// that their cached statements are not compiled again at each run. The
	// pool connects when first used.
	office, err := sqlitedriver.Open(path, sqlitedriver.Config{WAL: true, BusyTimeout: 10 * time.Second, Synchronous: "NORMAL"})
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	ckpt := sqlitedriver.NewCheckpointer(r, checkpointIdle, func(err error) { log.Warn("sqlitestore: checkpoint", "path", path, "err", err) })
	s, err := sqlstore.New(context.Background(), w, dialect{}, schema, sqlstore.Options{Read: r, Office: office, Now: opts.Now,
		OnCommit: ckpt.Wrote, BeforeClose: ckpt.Close})
	if err != nil {
		ckpt.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	return s, nil
}
