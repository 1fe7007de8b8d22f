package localdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/wire"
)

// ErrNotDevice is returned by Inspect for a file that is not a device
// database of tether: not SQLite, or without tether's tables.
var ErrNotDevice = errors.New("localdb: not a tether device database")

// Info is what Inspect reads of a device database: tether's bookkeeping,
// for an operator or a support desk.
type Info struct {
	// Path is the file inspected.
	Path string `json:"path"`
	// Layout is the number of steps of tether's layout the file has had.
	Layout int `json:"layout"`
	// Tenant is the tenant the file is bound to; "" before its first sync.
	Tenant string `json:"tenant"`
	// Device is the device id.
	Device string `json:"device"`
	// Registered reports whether the device registered with a server (and
	// has not changed its schema since).
	Registered bool `json:"registered"`
	// Cursor is the pull cursor, opaque; "" before the first pull.
	Cursor string `json:"cursor"`
	// Clock is the last reading of the device's clock: a stamp of the
	// last local edit or of the latest row pulled, whichever came later;
	// ClockTime is its wall-clock time.
	Clock     string     `json:"clock,omitempty"`
	ClockTime *time.Time `json:"clock_time,omitempty"`
	// Tables are the synced tables, by name.
	Tables []TableInfo `json:"tables"`
	// Pending is the number of rows with local changes the server has not
	// acknowledged, of every table.
	Pending int64 `json:"pending"`
	// PushSession is the server session of a push under way ("" when
	// none is); PushBatches is how many of its batches the server
	// acknowledged, and PushFinal whether its last batch was sent with the
	// commit, its answer unknown.
	PushSession string `json:"push_session,omitempty"`
	PushBatches int    `json:"push_batches,omitempty"`
	PushFinal   bool   `json:"push_final,omitempty"`
	// Rebuilding reports a rebuild from a snapshot under way.
	Rebuilding bool `json:"rebuilding"`
	// Stashed is the number of rows set aside: pages of a pull or of a
	// snapshot not yet applied.
	Stashed int64 `json:"stashed"`
	// Increments is the number of counter increments not yet pushed.
	Increments int64 `json:"increments"`
	// OwnSessions is the number of this device's committed sessions whose
	// rows its pulls skip.
	OwnSessions int64 `json:"own_sessions"`
	// OpenConflicts is the number of open entries of the conflict log.
	OpenConflicts int64 `json:"open_conflicts"`
	// Conflicts are the latest entries of the conflict log, open or
	// closed, newest first (InspectOptions.Conflicts).
	Conflicts []ConflictEntry `json:"conflicts"`
}

// TableInfo is a synced table of a device database.
type TableInfo struct {
	// Name is the table's name.
	Name string `json:"name"`
	// Rows is the number of its live rows.
	Rows int64 `json:"rows"`
	// Pending is the number of its rows with local changes not yet
	// acknowledged, PendingDeletes of them deletions.
	Pending        int64 `json:"pending"`
	PendingDeletes int64 `json:"pending_deletes"`
}

// ConflictEntry is an entry of the conflict log, as Inspect reads it.
type ConflictEntry struct {
	ID       int64  `json:"id"`
	Table    string `json:"table"`
	RowID    string `json:"row_id"`
	Strategy string `json:"strategy"`
	Winner   string `json:"winner"`
	// Reason is the server's reason, for a conflict of strategy
	// "reference".
	Reason string `json:"reason,omitempty"`
	// State is "open", "kept" or "dismissed".
	State string `json:"state"`
	// At is when the device recorded it.
	At time.Time `json:"at"`
	// Local and Winning are the device's and the server's versions.
	Local   wire.Row `json:"local"`
	Winning wire.Row `json:"winning"`
}

// InspectOptions configure Inspect. The zero value works.
type InspectOptions struct {
	// Conflicts is the number of entries of the conflict log read, the
	// latest; default 20, negative for none.
	Conflicts int
}

// Inspect reads tether's bookkeeping of the device database at path,
// opened read-only and without the app's registry: it changes nothing,
// and may run while the app has the file open. It returns an error
// wrapping ErrNotDevice for a file that is not a tether device database,
// and one wrapping fs.ErrNotExist for a missing file.
func Inspect(ctx context.Context, path string, opts InspectOptions) (Info, error) {
	if opts.Conflicts == 0 {
		opts.Conflicts = 20
	}
	if _, err := os.Stat(path); err != nil {
		return Info{}, fmt.Errorf("localdb: inspect: %w", err)
	}
	c := sqlitedriver.Config{ReadOnly: true, BusyTimeout: 5 * time.Second}
	if !exists(path+"-wal") && !exists(path+"-shm") {
		// No app has the file open, and it was closed cleanly: read the
		// file alone. A read-only connection would create a -wal and a
		// -shm it cannot remove, owned by whoever inspects (sudo), which
		// the app, another user, could then not open.
		c.Immutable = true
	}
	sdb, err := sqlitedriver.Open(path, c)
	if err != nil {
		return Info{}, fmt.Errorf("localdb: inspect %s: %w", path, err)
	}
	defer sdb.Close()
	// One read transaction: every figure of the same moment.
	tx, err := sdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Info{}, fmt.Errorf("localdb: inspect %s: %w", path, notDevice(err))
	}
	defer tx.Rollback()
	in := inspector{tx: tx, info: Info{Path: path}}
	if err := in.check(ctx); err != nil {
		return Info{}, fmt.Errorf("localdb: inspect %s: %w", path, err)
	}
	if err := errors.Join(in.state(ctx), in.tables(ctx), in.counts(ctx), in.conflicts(ctx, opts.Conflicts)); err != nil {
		return Info{}, fmt.Errorf("localdb: inspect %s: %w", path, err)
	}
	return in.info, nil
}

// inspector reads one device database for Inspect.
type inspector struct {
	tx   *sql.Tx
	info Info
}

// check makes sure the file is SQLite and holds tether's tables.
func (in *inspector) check(ctx context.Context) error {
	var n int
	err := in.tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table'
		AND name IN ('_tether_state', '_tether_conflicts', '_tether_migrations')`).Scan(&n)
	if err != nil {
		return notDevice(err)
	}
	if n != 3 {
		return fmt.Errorf("%w: it lacks tether's tables", ErrNotDevice)
	}
	return in.tx.QueryRowContext(ctx, `SELECT coalesce(max(step), 0) FROM _tether_migrations`).Scan(&in.info.Layout)
}

// notDevice wraps ErrNotDevice around the error of a file that is not
// SQLite. It reads SQLite's message of SQLITE_NOTADB: the driver's error
// type does not exist in a build without cgo, which localdb compiles in.
func notDevice(err error) error {
	if err != nil && strings.Contains(err.Error(), "file is not a database") {
		return fmt.Errorf("%w: %v", ErrNotDevice, err)
	}
	return err
}

// state reads the values of _tether_state.
func (in *inspector) state(ctx context.Context) error {
	i := &in.info
	var reg, rebuild string
	for key, dst := range map[string]*string{stateTenant: &i.Tenant, stateDevice: &i.Device, stateRegistered: &reg,
		stateCursor: &i.Cursor, stateClock: &i.Clock, stateRebuild: &rebuild} {
		v, err := getState(ctx, in.tx, key)
		if err != nil {
			return err
		}
		*dst = v
	}
	i.Registered, i.Rebuilding = reg != "", rebuild != ""
	if t := stampTime(i.Clock); !t.IsZero() {
		i.ClockTime = &t
	}
	st, err := readPushState(ctx, in.tx)
	if err != nil {
		return err
	}
	i.PushSession, i.PushBatches, i.PushFinal = st.Session, st.Seq, st.Final
	return nil
}

// tables finds the synced tables, those with tether's columns, and counts
// their rows.
func (in *inspector) tables(ctx context.Context) error {
	rows, err := in.tx.QueryContext(ctx, `SELECT m.name FROM sqlite_master AS m WHERE m.type = 'table'
		AND m.name NOT LIKE '\_tether\_%' ESCAPE '\' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\'
		AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) WHERE name = '_dirty')
		AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) WHERE name = '_change') ORDER BY m.name`)
	if err != nil {
		return fmt.Errorf("synced tables: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("synced tables: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("synced tables: %w", err)
	}
	in.info.Tables = []TableInfo{}
	for _, n := range names {
		ti := TableInfo{Name: n}
		err := in.tx.QueryRowContext(ctx, `SELECT coalesce(sum("_deleted" = 0), 0), coalesce(sum("_dirty" = 1), 0),
			coalesce(sum("_dirty" = 1 AND "_deleted" = 1), 0) FROM `+sqlident.Quote(n)).Scan(&ti.Rows, &ti.Pending, &ti.PendingDeletes)
		if err != nil {
			return fmt.Errorf("table %s: %w", n, err)
		}
		in.info.Pending += ti.Pending
		in.info.Tables = append(in.info.Tables, ti)
	}
	return nil
}

// counts counts the stash, the unsent increments, the own sessions and
// the open conflicts.
func (in *inspector) counts(ctx context.Context) error {
	i := &in.info
	err := in.tx.QueryRowContext(ctx, `SELECT (SELECT coalesce(sum(CASE WHEN substr(row, 1, 1) = '[' THEN json_array_length(row) ELSE 1 END), 0) FROM _tether_stash), (SELECT count(*) FROM _tether_increments),
		(SELECT count(*) FROM _tether_own), (SELECT count(*) FROM _tether_conflicts WHERE state = 'open')`).
		Scan(&i.Stashed, &i.Increments, &i.OwnSessions, &i.OpenConflicts)
	if err != nil {
		return fmt.Errorf("counts: %w", err)
	}
	return nil
}

// conflicts reads the latest n entries of the conflict log.
func (in *inspector) conflicts(ctx context.Context, n int) error {
	in.info.Conflicts = []ConflictEntry{}
	if n < 0 {
		return nil
	}
	rows, err := in.tx.QueryContext(ctx, `SELECT id, tbl, row_id, strategy, winner, reason, state, at, local, winning
		FROM _tether_conflicts ORDER BY id DESC LIMIT ?`, n)
	if err != nil {
		return fmt.Errorf("conflicts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c ConflictEntry
		var at, local, winning string
		if err := rows.Scan(&c.ID, &c.Table, &c.RowID, &c.Strategy, &c.Winner, &c.Reason, &c.State, &at, &local, &winning); err != nil {
			return fmt.Errorf("conflicts: %w", err)
		}
		if err := errors.Join(decodeRow(local, &c.Local), decodeRow(winning, &c.Winning)); err != nil {
			return fmt.Errorf("conflict %d: %w", c.ID, err)
		}
		var err error
		if c.At, err = entity.ParseTime(at); err != nil {
			return fmt.Errorf("conflict %d: time %q: %w", c.ID, at, err)
		}
		in.info.Conflicts = append(in.info.Conflicts, c)
	}
	return rows.Err()
}

// exists reports whether a file is at path.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
