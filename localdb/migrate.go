package localdb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tethersync/tether/entity"
)

// migrations are the layouts of the store's own tables, in order: step i
// takes a database from layout i to i+1, and is recorded in
// _tether_migrations (PRAGMA user_version is the app's: tether leaves it
// alone). The next change of
// layout is one more step at the end; a step is never edited once a
// version of tether that applies it has shipped. (The app's tables are not
// here: they follow the registry, see table.create.) A step that changes
// the bookkeeping columns of the app's tables would alter each of them.
var migrations = []string{
	// 1: the first layout.
	`CREATE TABLE _tether_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE _tether_ctl (id INTEGER PRIMARY KEY CHECK (id = 1), suppress INTEGER NOT NULL, change INTEGER NOT NULL);
INSERT INTO _tether_ctl (id, suppress, change) VALUES (1, 0, 0);
CREATE TABLE _tether_push (tbl TEXT NOT NULL, id TEXT NOT NULL, change INTEGER NOT NULL, PRIMARY KEY (tbl, id));
CREATE TABLE _tether_conflicts (
	id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, row_id TEXT NOT NULL, strategy TEXT NOT NULL,
	winner TEXT NOT NULL, local TEXT NOT NULL, winning TEXT NOT NULL, lost TEXT, at TEXT NOT NULL,
	state TEXT NOT NULL DEFAULT 'open', pushed_hlc TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '');
CREATE INDEX _tether_conflicts__open ON _tether_conflicts (id) WHERE state = 'open';
CREATE TABLE _tether_own (seq INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, version INTEGER NOT NULL);
CREATE TABLE _tether_stash (seq INTEGER PRIMARY KEY AUTOINCREMENT, row TEXT NOT NULL);
CREATE TABLE _tether_increments (id TEXT PRIMARY KEY, tbl TEXT NOT NULL, "row" TEXT NOT NULL, col TEXT NOT NULL,
	delta INTEGER NOT NULL, sent INTEGER NOT NULL DEFAULT 0);
CREATE INDEX _tether_increments__row ON _tether_increments (tbl, "row", col);`,
	// 2: the batches a push sent, one row each (see sent.go); a push under
	// way keeps the rows it recorded in _tether_push.
	`CREATE TABLE _tether_sent (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, first TEXT NOT NULL, last TEXT NOT NULL,
	change INTEGER NOT NULL, ids TEXT NOT NULL);`,
}

// migrate applies in tx the steps of migrations the database has not had
// yet, and records each in _tether_migrations. It refuses a database of a
// later layout, made by a newer version of tether.
func migrate(ctx context.Context, tx *sql.Tx) error {
	return migrateTo(ctx, tx, migrations)
}

func migrateTo(ctx context.Context, tx *sql.Tx, steps []string) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS _tether_migrations (step INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("layout steps table: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(step), 0) FROM _tether_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("read layout version: %w", err)
	}
	if have > len(steps) {
		return fmt.Errorf("layout version %d is newer than this version of tether knows (%d)", have, len(steps))
	}
	for i := have; i < len(steps); i++ {
		if _, err := tx.ExecContext(ctx, steps[i]); err != nil {
			return fmt.Errorf("layout step %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO _tether_migrations (step, applied_at) VALUES (?, ?)`,
			i+1, entity.FormatTime(time.Now())); err != nil {
			return fmt.Errorf("record layout step %d: %w", i+1, err)
		}
	}
	return nil
}
