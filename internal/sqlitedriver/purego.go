//go:build !cgo || tether_purego

package sqlitedriver

import (
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/driver"         // registers "sqlite3"
	_ "github.com/ncruces/go-sqlite3/vfs/adiantum" // registers the "adiantum" VFS

	"github.com/tethersync/tether/internal/sqlitedsn"
)

// DriverName is the database/sql driver name of the linked driver.
const DriverName = "sqlite3"

// Name names the linked driver, for reports.
const Name = "ncruces/go-sqlite3 (pure Go)"

// PureGo reports whether the linked driver is the pure-Go one.
const PureGo = true

// Encryption reports whether the linked driver can encrypt a database
// (Config.Key).
const Encryption = true

// timeLayout is go-sqlite3's layout for a bound time.Time, so that both
// drivers write the same text; it also stops ncruces from turning
// RFC 3339 text read from an untyped expression into a time.Time.
const timeLayout = "2006-01-02 15:04:05.999999999-07:00"

// dsn spells c in ncruces' parameters: each setting a _pragma, in the
// order the driver asks for (busy timeout first, then the journal mode).
func dsn(path string, c Config) string {
	q := url.Values{}
	if c.Key != nil {
		q.Set("vfs", "adiantum")
		q.Set("hexkey", hex.EncodeToString(c.Key))
	}
	if c.ReadOnly {
		q.Set("mode", "ro")
	}
	if c.Immutable {
		q.Set("immutable", "1")
	}
	q.Set("_txlock", c.TxLock)
	q.Set("_timefmt", timeLayout)
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(c.BusyTimeout.Milliseconds(), 10)+")")
	if c.AutoVacuum != "" {
		q.Add("_pragma", "auto_vacuum("+c.AutoVacuum+")")
	}
	if c.WAL {
		q.Add("_pragma", "journal_mode(WAL)")
	}
	if c.ForeignKeys {
		q.Add("_pragma", "foreign_keys(on)")
	} else {
		q.Add("_pragma", "foreign_keys(off)") // said, whatever the build's default
	}
	if c.Synchronous != "" {
		q.Add("_pragma", "synchronous("+c.Synchronous+")")
	}
	if c.NoAutoCheckpoint {
		q.Add("_pragma", "wal_autocheckpoint(0)")
	}
	return sqlitedsn.Query(path, q)
}

// open opens dsn, spelled for c. Config.Stable is a setting of each new
// connection, which a DSN cannot say.
func open(dsn string, c Config) (*sql.DB, error) {
	if !c.Stable {
		return sql.Open(DriverName, dsn)
	}
	return driver.Open(dsn, func(conn *sqlite3.Conn) error {
		_, err := conn.Config(sqlite3.DBCONFIG_ENABLE_QPSG, true)
		return err
	})
}

func isNotADB(err error) bool { return errors.Is(err, sqlite3.NOTADB) }

func isBusy(err error) bool { return errors.Is(err, sqlite3.BUSY) }
