package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server/sqlstore"
	"github.com/tethersync/tether/wire"
)

// Store is the MySQL server store.
type Store = sqlstore.Store

// PollInterval is how often a store that has event subscribers reads the
// tenants' versions to learn of other processes' commits.
const PollInterval = 200 * time.Millisecond

// Options configure Open. The zero value works.
type Options struct {
	// Now is the clock of the store's time-based rules: session expiry,
	// device activity, retention and the times it records. Default
	// time.Now; tests set it to move time without waiting.
	Now func() time.Time
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
	s, err := sqlstore.New(ctx, db, d, schema, sqlstore.Options{Now: opts.Now})
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

// dialect is the MySQL dialect of sqlstore.
type dialect struct {
	db        *sql.DB
	collation string // binary, no pad
}

// Name implements sqlstore.Dialect.
func (*dialect) Name() string { return "mysql" }

// Rebind implements sqlstore.Dialect: MySQL reads ? placeholders.
func (*dialect) Rebind(q string) string { return q }

// Time implements sqlstore.Dialect: DATETIME(6) in UTC.
func (*dialect) Time(t time.Time) any { return t.UTC() }

// ForUpdate implements sqlstore.Dialect.
func (*dialect) ForUpdate() string { return " FOR UPDATE" }

// ReadOptions implements sqlstore.Dialect: a repeatable-read snapshot.
func (*dialect) ReadOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

// WriteOptions implements sqlstore.Dialect: read committed, so that
// locking reads take no gap locks (commits are serialized by the tenant's
// row, sessions by theirs).
func (*dialect) WriteOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

// Retryable implements sqlstore.Dialect: deadlocks and lock wait timeouts.
func (*dialect) Retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// After implements sqlstore.Dialect. MariaDB does not seek an index with
// a row value: the position is spelled out as two ranges.
func (*dialect) After(version int64, id string) (string, []any) {
	return `("_version" > ? OR ("_version" = ? AND "id" > ?))`, []any{version, version, id}
}

// Text implements sqlstore.Dialect.
func (*dialect) Text(col string) string { return col }

// JSON implements sqlstore.Dialect: "_colvers" is text.
func (*dialect) JSON(expr string) string { return expr }

// ByteOrder implements sqlstore.Dialect: ids are stored in a binary
// collation.
func (*dialect) ByteOrder(col string) string { return col }

// NextVersion implements sqlstore.Dialect: the tenant's row of
// _tether_tenants, locked until the commit ends, counts its versions.
func (*dialect) NextVersion(ctx context.Context, tx *sql.Tx, tenant string) (int64, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO _tether_tenants (tenant, version, device) VALUES (?, 1, '')
		ON DUPLICATE KEY UPDATE version = version + 1`, tenant); err != nil {
		return 0, fmt.Errorf("lock tenant: %w", err)
	}
	var v int64
	err := tx.QueryRowContext(ctx, `SELECT version FROM _tether_tenants WHERE tenant = ?`, tenant).Scan(&v)
	return v, err
}

// Stage implements sqlstore.Dialect with multi-row inserts; a row staged
// again by a later batch replaces the earlier copy, and an earlier batch
// sent again does not replace a later one.
func (*dialect) Stage(ctx context.Context, _ *sql.Conn, tx *sql.Tx, t *sqlstore.Table, tenant, session string, seq int, rows []wire.Row) error {
	// Assignments run left to right on the updated row: "_seq" goes last.
	tail := `ON DUPLICATE KEY UPDATE ` + t.RestageSet(func(c string) string {
		return fmt.Sprintf(`%s = IF(VALUES("_seq") >= "_seq", VALUES(%s), %s)`, c, c, c)
	})
	return sqlstore.StageInsert(ctx, tx, t, tenant, session, seq, rows, tail)
}

// Latest implements sqlstore.Dialect: a session holds one copy of a row.
func (*dialect) Latest(t *sqlstore.Table) string {
	return `SELECT * FROM ` + t.Stage + ` WHERE "_tenant" = ? AND "_session" = ?`
}

// Upsert implements sqlstore.Dialect. The target's columns are named
// with the table, since the merge's SELECT joins the table too.
func (*dialect) Upsert(t *sqlstore.Table) string {
	return `ON DUPLICATE KEY UPDATE ` + t.MergeSet(func(c string) string { return fmt.Sprintf("%s.%s = VALUES(%s)", t.Name, c, c) }) +
		`, ` + t.Name + `."_colvers" = JSON_MERGE_PATCH(` + t.Name + `."_colvers", VALUES("_colvers"))`
}

// ColumnVersions implements sqlstore.Dialect, with JSON_TABLE.
func (*dialect) ColumnVersions(changed string) string {
	return `coalesce((SELECT JSON_OBJECTAGG(j.c, ?) FROM JSON_TABLE(` + changed + `, '$[*]' COLUMNS (c VARCHAR(64) PATH '$')) AS j), '{}')`
}

// Notify implements sqlstore.CrossProcess: the commit's device goes into
// the tenant's row, whose version NextVersion already moved.
func (*dialect) Notify(ctx context.Context, tx *sql.Tx, n sqlstore.Notice) error {
	_, err := tx.ExecContext(ctx, `UPDATE _tether_tenants SET device = ? WHERE tenant = ?`, n.Device, n.Tenant)
	return err
}

// Listen implements sqlstore.CrossProcess by polling the tenants'
// versions every PollInterval. Commits between two polls are coalesced;
// when a tenant moved by more than one version, the event names no device,
// so that no device takes another's commit for its own.
func (d *dialect) Listen(ctx context.Context, ready func(), deliver func(sqlstore.Notice)) error {
	seen := map[string]int64{}
	poll := func(first bool) error {
		rows, err := d.db.QueryContext(ctx, `SELECT tenant, version, device FROM _tether_tenants`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n sqlstore.Notice
			if err := rows.Scan(&n.Tenant, &n.Version, &n.Device); err != nil {
				return err
			}
			last, known := seen[n.Tenant]
			seen[n.Tenant] = n.Version
			if first || (known && n.Version == last) {
				continue
			}
			if !known || n.Version > last+1 {
				n.Device = ""
			}
			deliver(n)
		}
		return rows.Err()
	}
	if err := poll(true); err != nil {
		return err
	}
	ready()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := poll(false); err != nil {
			return err
		}
	}
}
