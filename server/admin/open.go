package admin

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server/mysqlstore"
	"github.com/tethersync/tether/server/pgstore"
	"github.com/tethersync/tether/server/sqlstore"
)

// OpenStore opens the server database db as tether-server's -db names it:
// the PostgreSQL store for a postgres:// URL, the MySQL store for a
// mysql:// URL, else the SQLite store at the path db. It opens it without
// the app's schema, which the admin reads do not need, so it changes
// none of the app's tables. A SQLite path or a PostgreSQL database without
// tether's tables is refused with an error wrapping ErrNotServer (a MySQL
// database is not checked first: an empty one gets tether's empty
// bookkeeping tables).
func OpenStore(ctx context.Context, db string) (*sqlstore.Store, error) {
	switch {
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		if err := checkPostgres(ctx, db); err != nil {
			return nil, err
		}
		return pgstore.Open(ctx, db, entity.Schema{}, pgstore.Options{})
	case strings.HasPrefix(db, "mysql://"):
		return mysqlstore.Open(ctx, db, entity.Schema{}, mysqlstore.Options{})
	}
	return openSQLite(ctx, db)
}

// checkPostgres returns an error wrapping ErrNotServer when the database
// at url has no _tether_tenants table.
func checkPostgres(ctx context.Context, url string) error {
	db, err := sql.Open("pgx", url) // registered by pgstore's pgx/stdlib
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer db.Close()
	var ok bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass('_tether_tenants') IS NOT NULL`).Scan(&ok); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if !ok {
		return fmt.Errorf("the PostgreSQL database has no _tether_tenants table: %w", ErrNotServer)
	}
	return nil
}
