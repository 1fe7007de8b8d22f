//go:build cgo

package admin

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/mattn/go-sqlite3"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlitedsn"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/server/sqlstore"
)

// openSQLite opens the SQLite store at path, after checking, read-only,
// that the file is a tether server database: a mistyped path must not
// create one.
func openSQLite(ctx context.Context, path string) (*sqlstore.Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite3", sqlitedsn.DSN(path, map[string]string{"mode": "ro", "_busy_timeout": "5000"}))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_tether_tenants'`).Scan(&n)
	var se sqlite3.Error
	switch {
	case errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt):
		return nil, fmt.Errorf("%s is not a SQLite database: %w", path, ErrNotServer)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", path, err)
	case n == 0:
		return nil, fmt.Errorf("%s has no _tether_tenants table (a device database? see the device command): %w", path, ErrNotServer)
	}
	// A database of an older server, in auto_vacuum NONE, stays so: the
	// conversion's VACUUM would rewrite it and hold its writer.
	return sqlitestore.Open(path, entity.Schema{}, sqlitestore.Options{KeepAutoVacuum: true})
}
