package localdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/wire"
)

// Sentinel errors.
var (
	// ErrNotFound is returned by Get and Delete when the row does not exist
	// or is deleted.
	ErrNotFound = errors.New("localdb: not found")
	// ErrClosed is wrapped by the error of every method of DB (and of
	// Query on a DB) called after Close.
	ErrClosed = errors.New("localdb: closed")
	// ErrOtherTenant is returned by Syncer.BindTenant when the database
	// already belongs to another tenant.
	ErrOtherTenant = errors.New("localdb: database belongs to another tenant")
	// ErrConflictClosed is returned by KeepLocal and DismissConflict for a
	// conflict that is not open.
	ErrConflictClosed = errors.New("localdb: conflict not open")
)

// Options configures a DB. The zero value works.
type Options struct {
	// Now is the wall clock read by the hybrid logical clock.
	// Default time.Now.
	Now func() time.Time
	// BusyTimeout is how long a write waits for another writer's lock.
	// Default 10s.
	BusyTimeout time.Duration
	// ConflictRetention is how long conflict log entries are kept once
	// closed (kept or dismissed); the next push after that removes them.
	// Open entries stay until the app closes them. Default 30 days.
	ConflictRetention time.Duration
	// Key, when set, is the KeySize-byte key that encrypts the database
	// file and its WAL at rest (Adiantum, through ncruces/go-sqlite3's
	// "adiantum" VFS). Only a build with the pure-Go SQLite driver can
	// encrypt (CGO_ENABLED=0, or -tags tether_purego): a cgo build returns
	// ErrNoEncryption. A wrong key returns ErrWrongKey and a plain
	// database ErrNotEncrypted (see Encrypt and Rekey). Default nil: a
	// plain database.
	Key []byte
}

// DB is a local SQLite database of synced entities: the app's API to it
// (the sync engines use its Syncer). It is safe for concurrent use.
type DB struct {
	sql *sql.DB
	// unchecked is a connection of its own with foreign keys off, for the
	// engines' transactions that write the server's rows (see
	// inTxUnchecked). Turning foreign keys off and on around a transaction
	// instead would cost every statement cached on the connection its
	// compiled program: SQLite expires them all when the pragma changes.
	unchecked *sql.DB
	path      string // as given to Open, for errors
	reg       *entity.Registry
	tables    []*table // in priority order
	byName    map[string]*table
	clock     *clock
	refill    int64 // see stateRefill
	// conflictRetention is Options.ConflictRetention.
	conflictRetention time.Duration
	device            string
	key               string // the device key; see Syncer.DeviceKey
	closed            atomic.Bool
	learn             learning                   // see Syncer.Learned
	ckpt              *sqlitedriver.Checkpointer // see inTxUnchecked
	stashed           atomic.Bool                // rows were set aside since the last writeRemote: it is large
}

// Open opens the SQLite database at path, creating it if needed, with the
// tables of every entity registered in reg. It adds missing tables and
// columns when the structs have grown and never drops anything. The
// database runs in WAL mode with foreign keys enforced.
func Open(ctx context.Context, path string, reg *entity.Registry) (*DB, error) {
	return OpenWith(ctx, path, reg, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, reg *entity.Registry, opts Options) (*DB, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.ConflictRetention <= 0 {
		opts.ConflictRetention = 30 * 24 * time.Hour
	}
	if err := checkKey(path, opts.Key); err != nil {
		return nil, fmt.Errorf("localdb: open %s: %w", path, err)
	}
	// The app's connections plan as SQLite does by default (an app's
	// LIKE ? uses an index); tether's statements on them bind nothing
	// the planner reads (no LIMIT ?), so that SQLite does not compile them
	// again at each run. The engines' own connection plans without bound
	// values (Stable).
	cfg := sqlitedriver.Config{WAL: true, BusyTimeout: opts.BusyTimeout,
		ForeignKeys: true, TxLock: "immediate", Synchronous: "NORMAL", StmtCache: 64, Key: opts.Key}
	sdb, err := sqlitedriver.Open(path, cfg)
	if err != nil {
		return nil, fmt.Errorf("localdb: open %s: %w", path, err)
	}
	cfg.ForeignKeys, cfg.Stable = false, true
	unchecked, err := sqlitedriver.Open(path, cfg)
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("localdb: open %s: %w", path, err)
	}
	// One connection: the engines write one transaction at a time.
	unchecked.SetMaxOpenConns(1)
	unchecked.SetMaxIdleConns(1)
	db := &DB{sql: sdb, unchecked: unchecked, path: path, reg: reg, byName: map[string]*table{}, conflictRetention: opts.ConflictRetention}
	if err := db.init(ctx, opts); err != nil {
		sdb.Close()
		unchecked.Close()
		if sqlitedriver.IsNotADatabase(err) {
			err = fmt.Errorf("%w: %w", ErrWrongKey, err)
		}
		return nil, fmt.Errorf("localdb: open %s: %w", path, err)
	}
	// The engine's large transactions leave the log to a checkpointer
	// (see inTxUnchecked); other commits checkpoint as SQLite does.
	db.ckpt = sqlitedriver.NewCheckpointer(sdb, 0, nil)
	return db, nil
}

// init brings the store's own tables to the current layout (migrate),
// creates or grows the app's tables, and loads the device id and key, the
// clock and the refill version, in one transaction.
func (db *DB) init(ctx context.Context, opts Options) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := migrate(ctx, tx); err != nil {
		return err
	}
	// A crash can never leave suppression on: it is only set inside a
	// transaction. Clear it anyway in case a tool wrote it.
	if _, err := tx.ExecContext(ctx, `UPDATE _tether_ctl SET suppress = 0`); err != nil {
		return err
	}
	grew, err := db.createTables(ctx, tx)
	if err != nil {
		return err
	}
	if grew {
		if err := startRefill(ctx, tx, db.tables); err != nil {
			return err
		}
	}
	if err := db.loadRefill(ctx, tx); err != nil {
		return err
	}
	if err := db.loadDevice(ctx, tx); err != nil {
		return err
	}
	if err := db.loadClock(ctx, tx, opts.Now); err != nil {
		return err
	}
	return tx.Commit()
}

// createTables creates or grows the table of every registered entity. It
// reports whether one grew: a new app version added tables or columns.
func (db *DB) createTables(ctx context.Context, tx *sql.Tx) (grew bool, err error) {
	for _, e := range db.reg.Entities() {
		t := newTable(e)
		g, err := t.create(ctx, tx)
		if err != nil {
			return false, fmt.Errorf("table %s: %w", t.name, err)
		}
		grew = grew || g
		db.tables = append(db.tables, t)
		db.byName[t.name] = t
	}
	return grew, nil
}

// startRefill prepares the device for the tables or columns a new app
// version added, which it skipped so far: the next pull starts over, so
// that they arrive, and rewrites the rows it holds at the same version too
// (up to the latest version it holds now); rows edited here stay as they
// are (a pull never overwrites a dirty row).
func startRefill(ctx context.Context, tx *sql.Tx, tables []*table) error {
	var latest int64
	for _, t := range tables {
		var v int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max("_version"), 0) FROM `+sqlident.Quote(t.name)).Scan(&v); err != nil {
			return err
		}
		latest = max(latest, v)
	}
	if err := setState(ctx, tx, stateCursor, ""); err != nil {
		return err
	}
	// Pages of the pull that was under way are fetched again.
	if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_stash`); err != nil {
		return err
	}
	if latest == 0 {
		return nil
	}
	return setState(ctx, tx, stateRefill, strconv.FormatInt(latest, 10))
}

// loadRefill reads the refill version startRefill stored.
func (db *DB) loadRefill(ctx context.Context, tx *sql.Tx) error {
	refill, err := getState(ctx, tx, stateRefill)
	if err != nil || refill == "" {
		return err
	}
	if db.refill, err = strconv.ParseInt(refill, 10, 64); err != nil {
		return badState(stateRefill, refill, err)
	}
	return nil
}

// loadDevice reads the device id and the device key, making each at the
// first open that lacks it: a database made before device keys gets its
// key at its next open, and keeps its id.
func (db *DB) loadDevice(ctx context.Context, tx *sql.Tx) error {
	device, err := getOrSetState(ctx, tx, stateDevice, uuid.NewString)
	if err != nil {
		return err
	}
	key, err := getOrSetState(ctx, tx, stateDeviceKey, newDeviceKey)
	if err != nil {
		return err
	}
	if !wire.ValidDeviceKey(key) {
		// Not the value shown: it is a secret.
		return badState(stateDeviceKey, "(hidden)", errors.New("not a well-formed device key"))
	}
	db.device, db.key = device, key
	return nil
}

// newDeviceKey returns a new device key: 32 random bytes from crypto/rand,
// base64url without padding (43 characters; see wire.ValidDeviceKey).
func newDeviceKey() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// loadClock starts the clock of the device (loadDevice first) from its
// stored reading.
func (db *DB) loadClock(ctx context.Context, tx *sql.Tx, now func() time.Time) error {
	db.clock = &clock{now: now, device: db.device}
	last, err := getState(ctx, tx, stateClock)
	if err != nil || last == "" {
		return err
	}
	if _, _, _, err := wire.ParseStamp(last); err != nil {
		return badState(stateClock, last, err)
	}
	db.clock.Observe(last)
	return nil
}

// DeviceID returns the id this database was given at creation. It names the
// device to the server and breaks clock ties. It is no secret: other
// devices see it in the rows they pull. The device proves it is the device
// it names with its key, which only the sync engine uses
// (Syncer.DeviceKey).
func (db *DB) DeviceID() string { return db.device }

// SQL returns the underlying database for the application's own queries.
// Inserts, updates and deletes it makes on synced tables are tracked like
// those made through Save and Delete: a DELETE becomes a tombstone. Rows
// with deleted = 1 in column _deleted are tombstones; filter them out.
func (db *DB) SQL() *sql.DB { return db.sql }

// Close closes the database. Every method called afterwards returns an
// error wrapping ErrClosed; a method already running when Close is called
// may instead fail with database/sql's error for a closed database.
// Closing again does nothing and returns nil. DeviceID (and the Syncer's
// DeviceKey) keeps working after Close, and SQL returns the closed *sql.DB.
func (db *DB) Close() error {
	if !db.closed.CompareAndSwap(false, true) {
		return nil
	}
	return db.closeAll()
}

// closeAll stops the checkpointer and closes both pools: the app's and
// the engines' connection (Close, Wipe).
func (db *DB) closeAll() error {
	db.ckpt.Close()
	return errors.Join(db.sql.Close(), db.unchecked.Close())
}

// checkOpen returns an error wrapping ErrClosed, naming op, once Close was
// called.
func (db *DB) checkOpen(op string) error {
	if db.closed.Load() {
		return fmt.Errorf("%w (%s)", ErrClosed, op)
	}
	return nil
}

// Pending returns the number of rows with local changes not yet
// acknowledged by the server.
func (db *DB) Pending(ctx context.Context) (int, error) {
	if err := db.checkOpen("Pending"); err != nil {
		return 0, err
	}
	if len(db.tables) == 0 {
		return 0, nil
	}
	// One statement for every table: a sync asks before each push.
	counts := make([]string, len(db.tables))
	for i, t := range db.tables {
		counts[i] = "(" + t.countDirty + ")"
	}
	var total int
	if err := db.sql.QueryRowContext(ctx, "SELECT "+strings.Join(counts, " + ")).Scan(&total); err != nil {
		return 0, fmt.Errorf("localdb: pending: %w", err)
	}
	return total, nil
}
