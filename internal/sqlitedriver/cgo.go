//go:build cgo && !tether_purego

package sqlitedriver

import (
	"database/sql"
	"errors"
	"strconv"

	"github.com/mattn/go-sqlite3"

	"github.com/tethersync/tether/internal/sqlitedsn"
)

// DriverName is the database/sql driver name of the linked driver.
const DriverName = "sqlite3"

// Name names the linked driver, for reports.
const Name = "mattn/go-sqlite3 (cgo)"

// PureGo reports whether the linked driver is the pure-Go one.
const PureGo = false

// Encryption reports whether the linked driver can encrypt a database
// (Config.Key).
const Encryption = false

// NoCheckpointDriver is the database/sql driver name of go-sqlite3 with
// automatic checkpoints off on each new connection, which its DSN cannot
// say: Open uses it for Config.NoAutoCheckpoint (DSN alone does not).
const NoCheckpointDriver = "sqlite3_tether_nockpt"

func init() {
	sql.Register(NoCheckpointDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec(`PRAGMA wal_autocheckpoint = 0`, nil)
		return err
	}})
}

// driverName is the database/sql driver that opens c's DSN.
func driverName(c Config) string {
	if c.NoAutoCheckpoint {
		return NoCheckpointDriver
	}
	return DriverName
}

// open opens dsn, spelled for c: the DSN says all of c (Config.Stable as
// qpsgParam).
func open(dsn string, c Config) (*sql.DB, error) {
	if c.Stable {
		if err := registerQPSG(); err != nil {
			return nil, err
		}
	}
	return sql.Open(driverName(c), dsn)
}

// dsn spells c in go-sqlite3's parameters.
func dsn(path string, c Config) string {
	p := map[string]string{
		"_busy_timeout": strconv.FormatInt(c.BusyTimeout.Milliseconds(), 10),
		"_txlock":       c.TxLock,
	}
	if c.ReadOnly {
		p["mode"] = "ro"
	}
	if c.Immutable {
		p["immutable"] = "1"
	}
	if c.WAL {
		p["_journal_mode"] = "WAL"
	}
	p["_foreign_keys"] = "off" // said, whatever the build's default
	if c.ForeignKeys {
		p["_foreign_keys"] = "on"
	}
	if c.Synchronous != "" {
		p["_synchronous"] = c.Synchronous
	}
	if c.AutoVacuum != "" {
		p["_auto_vacuum"] = c.AutoVacuum
	}
	if c.StmtCache > 0 {
		p["_stmt_cache_size"] = strconv.Itoa(c.StmtCache)
	}
	if c.Stable {
		p[qpsgParam] = "1"
	}
	return sqlitedsn.DSN(path, p)
}

func isNotADB(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrNotADB
}

func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrBusy
}
