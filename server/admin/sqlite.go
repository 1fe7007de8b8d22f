package admin

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlitedriver"
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
	db, err := sqlitedriver.Open(path, sqlitedriver.Config{ReadOnly: true, BusyTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_tether_tenants'`).Scan(&n)
	switch {
	case sqlitedriver.IsNotADatabase(err):
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
