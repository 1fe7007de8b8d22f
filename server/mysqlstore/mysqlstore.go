package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server/sqlstore"
)

// Store is the MySQL server store.
type Store = sqlstore.Store

// Options configure Open. The zero value works.
type Options struct {
	// Now is the clock of the store's time-based rules: session expiry,
	// device activity, retention and the times it records. Default
	// time.Now; tests set it to move time without waiting.
	Now func() time.Time
	// Logger receives the store's background errors: a lost event
	// listener, and its recovery. Default slog.Default().
	Logger *slog.Logger
}

// Open connects to the MySQL or MariaDB database named by dsn and creates
// or upgrades the tables of schema. dsn is a go-sql-driver/mysql DSN
// ("user:pass@tcp(host:3306)/tether") or a URL
// ("mysql://user:pass@host:3306/tether"); the store sets the session
// options it relies on (ANSI_QUOTES, strict mode, UTC, utf8mb4).
func Open(ctx context.Context, dsn string, schema entity.Schema, opts Options) (*Store, error) {
	cfg, err := parseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: open: %w", err)
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: open: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxIdleConns(16)
	d := &dialect{db: db}
	if d.collation, err = binaryCollation(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysqlstore: open: %w", err)
	}
	s, err := sqlstore.New(ctx, db, d, schema, sqlstore.Options{Now: opts.Now, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: open: %w", err)
	}
	return s, nil
}

// parseDSN reads a DSN or a mysql:// URL into the driver's configuration,
// with the session options the store relies on.
func parseDSN(dsn string) (*mysql.Config, error) {
	if strings.HasPrefix(dsn, "mysql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("malformed URL: %w", err)
		}
		host := u.Host
		if u.Port() == "" {
			host += ":3306"
		}
		pass, _ := u.User.Password()
		cred := u.User.Username()
		if pass != "" {
			cred += ":" + pass
		}
		dsn = fmt.Sprintf("%s@tcp(%s)/%s", cred, host, strings.TrimPrefix(u.Path, "/"))
		if u.RawQuery != "" {
			dsn += "?" + u.RawQuery
		}
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.DBName == "" {
		return nil, fmt.Errorf("no database named in %q", dsn)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.InterpolateParams = true // one round trip per statement
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["sql_mode"] = "'ANSI_QUOTES,STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY'"
	cfg.Params["time_zone"] = "'+00:00'"
	cfg.Collation = "utf8mb4_general_ci" // the connection's; columns choose their own
	return cfg, nil
}

// binaryCollation returns the utf8mb4 collation that compares by bytes
// without padding: MariaDB's utf8mb4_nopad_bin, MySQL 8's utf8mb4_0900_bin.
func binaryCollation(ctx context.Context, db *sql.DB) (string, error) {
	for _, c := range []string{"utf8mb4_nopad_bin", "utf8mb4_0900_bin"} {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.collations WHERE collation_name = ?`, c).Scan(&n); err != nil {
			return "", err
		}
		if n > 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("the server has no binary no-pad utf8mb4 collation (MySQL 8 or MariaDB 10.2 and later are)")
}
