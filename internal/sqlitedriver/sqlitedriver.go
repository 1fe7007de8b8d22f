package sqlitedriver

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors.
var (
	// ErrNoEncryption is returned by Open and DSN for a Config with a Key
	// when the binary was built with the cgo driver, which cannot encrypt.
	ErrNoEncryption = errors.New("encryption at rest needs the pure-Go SQLite driver: build with CGO_ENABLED=0 or -tags " + PureGoTag)
	// ErrBadKey is returned by Open and DSN for a Key that is not KeySize
	// bytes long.
	ErrBadKey = fmt.Errorf("encryption key must be %d bytes", KeySize)
)

// PureGoTag is the build tag that selects the pure-Go driver even when cgo
// is enabled.
const PureGoTag = "tether_purego"

// KeySize is the length in bytes of an encryption key (Adiantum's 256-bit
// key).
const KeySize = 32

// DefaultBusyTimeout is the busy timeout of a Config that sets none: the
// go-sqlite3 driver's default, used with both drivers.
const DefaultBusyTimeout = 5 * time.Second

// Config says how to open one SQLite database. The zero value opens the
// file read-write with deferred transactions and the driver's defaults.
type Config struct {
	// ReadOnly opens the database read-only (mode=ro).
	ReadOnly bool
	// Immutable opens the file as one no other connection changes
	// (immutable=1): SQLite then takes no lock and creates no -wal or
	// -shm file. Only for a file no one has open.
	Immutable bool
	// WAL sets the journal mode to WAL.
	WAL bool
	// BusyTimeout is how long a statement waits for another connection's
	// lock. Default DefaultBusyTimeout.
	BusyTimeout time.Duration
	// ForeignKeys turns on foreign key enforcement; without it the DSN
	// turns it off, whatever the SQLite build's default.
	ForeignKeys bool
	// TxLock is how BEGIN takes locks: "deferred" (the default),
	// "immediate" or "exclusive".
	TxLock string
	// AutoVacuum is PRAGMA auto_vacuum ("INCREMENTAL", ...), which takes
	// effect in a database that has no table yet; empty leaves SQLite's
	// default (NONE).
	AutoVacuum string
	// Synchronous is PRAGMA synchronous ("NORMAL", "FULL", ...); empty
	// leaves SQLite's default.
	Synchronous string
	// StmtCache is the number of prepared statements the go-sqlite3
	// driver caches per connection; ncruces has no such cache and ignores
	// it. Zero leaves the driver's default.
	StmtCache int
	// NoAutoCheckpoint turns SQLite's automatic checkpoint off on every
	// connection (PRAGMA wal_autocheckpoint = 0): a commit then never
	// copies the write-ahead log into the database file itself, which it
	// otherwise does once the log passes 1,000 pages, and the opener
	// checkpoints instead (see Checkpointer). Open applies it; with the
	// cgo driver, a DSN alone does not say it (see NoCheckpointDriver).
	NoAutoCheckpoint bool
	// Stable turns on SQLite's query planner stability guarantee
	// (SQLITE_DBCONFIG_ENABLE_QPSG) on every connection: a statement's
	// plan does not depend on the values bound to it. Without it, SQLite
	// 3.54 plans with the bound values of most parameters (a LIMIT, a key
	// compared with an index) and marks them, and go-sqlite3 clears a
	// cached statement's bindings before it is run again, which makes
	// SQLite compile it anew: most of the statements of a small sync were
	// compiled once a run, a sixth of its CPU.
	Stable bool
	// Key, when set, encrypts the database at rest with this KeySize-byte
	// key (pure-Go driver only; see ErrNoEncryption).
	Key []byte
}

// Open opens the database at path as c says, through the linked driver.
// Like sql.Open it does not connect; the first statement does.
func Open(path string, c Config) (*sql.DB, error) {
	dsn, err := DSN(path, c)
	if err != nil {
		return nil, err
	}
	return open(dsn, c)
}

// DSN returns the data source name of the database at path opened as c
// says, in the linked driver's spelling. The path is used as given.
// Config.Stable needs Open: the pure-Go driver sets it on each new
// connection, which a DSN cannot say, and the cgo driver's extension is
// registered by Open.
func DSN(path string, c Config) (string, error) {
	if c.Key != nil {
		if !Encryption {
			return "", ErrNoEncryption
		}
		if len(c.Key) != KeySize {
			return "", ErrBadKey
		}
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
	if c.TxLock == "" {
		c.TxLock = "deferred"
	}
	return dsn(path, c), nil
}

// IsNotADatabase reports whether err is SQLite's SQLITE_NOTADB: the file
// is not a database, or is encrypted with another key (or none).
func IsNotADatabase(err error) bool { return isNotADB(err) }

// IsBusy reports whether err is SQLite's SQLITE_BUSY: another connection
// held a lock past the busy timeout.
func IsBusy(err error) bool { return isBusy(err) }
