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
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: open: %w", err)
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: open: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxIdleConns(16)
	d := &Dialect{db: db}
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

// ParseDSN reads a DSN or a mysql:// URL into the driver's configuration,
// with the session options the store relies on.
func ParseDSN(dsn string) (*mysql.Config, error) {
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

// Dialect is the MySQL dialect of sqlstore.
type Dialect struct {
	db        *sql.DB
	collation string // binary, no pad
}

// Name implements sqlstore.Dialect.
func (*Dialect) Name() string { return "mysql" }

// Rebind implements sqlstore.Dialect: MySQL reads ? placeholders.
func (*Dialect) Rebind(q string) string { return q }

// Time implements sqlstore.Dialect: DATETIME(6) in UTC.
func (*Dialect) Time(t time.Time) any { return t.UTC() }

// ForUpdate implements sqlstore.Dialect.
func (*Dialect) ForUpdate() string { return " FOR UPDATE" }

// ReadOptions implements sqlstore.Dialect: a repeatable-read snapshot.
func (*Dialect) ReadOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

// WriteOptions implements sqlstore.Dialect: read committed, so that
// locking reads take no gap locks (commits are serialized by the tenant's
// row, sessions by theirs).
func (*Dialect) WriteOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

// Retryable implements sqlstore.Dialect: deadlocks and lock wait timeouts.
func (*Dialect) Retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// After implements sqlstore.Dialect. MariaDB does not seek an index with
// a row value: the position is spelled out as two ranges.
func (*Dialect) After(version int64, id string) (string, []any) {
	return `("_version" > ? OR ("_version" = ? AND "id" > ?))`, []any{version, version, id}
}

// Text implements sqlstore.Dialect.
func (*Dialect) Text(col string) string { return col }

// JSON implements sqlstore.Dialect: "_colvers" is text.
func (*Dialect) JSON(expr string) string { return expr }

// ByteOrder implements sqlstore.Dialect: ids are stored in a binary
// collation.
func (*Dialect) ByteOrder(col string) string { return col }

// NextVersion implements sqlstore.Dialect: the tenant's row of
// _tether_tenants, locked until the commit ends, counts its versions.
func (*Dialect) NextVersion(ctx context.Context, tx *sql.Tx, tenant string) (int64, error) {
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
func (*Dialect) Stage(ctx context.Context, _ *sql.Conn, tx *sql.Tx, t *sqlstore.Table, tenant, session string, seq int, rows []wire.Row) error {
	// Assignments run left to right on the updated row: "_seq" goes last.
	tail := `ON DUPLICATE KEY UPDATE ` + t.Assignments(func(c string) string {
		return fmt.Sprintf(`IF(VALUES("_seq") >= "_seq", VALUES(%s), %s)`, c, c)
	}, sqlstore.Restaged[1:]...)
	return sqlstore.StageInsert(ctx, tx, t, tenant, session, seq, rows, tail)
}

// Latest implements sqlstore.Dialect: a session holds one copy of a row.
func (*Dialect) Latest(t *sqlstore.Table) string {
	return `SELECT * FROM ` + t.Stage + ` WHERE "_tenant" = ? AND "_session" = ?`
}

// Upsert implements sqlstore.Dialect. The target's columns are named
// with the table, since the merge's SELECT joins the table too.
func (*Dialect) Upsert(t *sqlstore.Table) string {
	set := func(c string) string { return fmt.Sprintf("%s.%s = VALUES(%s)", t.Name, c, c) }
	var sets []string
	for _, c := range append(t.Cols[1:], sqlstore.Bookkeeping...) {
		sets = append(sets, set(c))
	}
	return `ON DUPLICATE KEY UPDATE ` + strings.Join(sets, ", ") +
		`, ` + t.Name + `."_colvers" = JSON_MERGE_PATCH(` + t.Name + `."_colvers", VALUES("_colvers"))`
}

// ColumnVersions implements sqlstore.Dialect, with JSON_TABLE.
func (*Dialect) ColumnVersions(changed string) string {
	return `coalesce((SELECT JSON_OBJECTAGG(j.c, ?) FROM JSON_TABLE(` + changed + `, '$[*]' COLUMNS (c VARCHAR(64) PATH '$')) AS j), '{}')`
}

// Notify implements sqlstore.CrossProcess: the commit's device goes into
// the tenant's row, whose version NextVersion already moved.
func (*Dialect) Notify(ctx context.Context, tx *sql.Tx, n sqlstore.Notice) error {
	_, err := tx.ExecContext(ctx, `UPDATE _tether_tenants SET device = ? WHERE tenant = ?`, n.Device, n.Tenant)
	return err
}

// Listen implements sqlstore.CrossProcess by polling the tenants'
// versions every PollInterval. Commits between two polls are coalesced;
// when a tenant moved by more than one version, the event names no device,
// so that no device takes another's commit for its own.
func (d *Dialect) Listen(ctx context.Context, ready func(), deliver func(sqlstore.Notice)) error {
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

func (d *Dialect) colType(c entity.Column) string {
	if c.Ref != "" { // ids, and indexed
		return fmt.Sprintf("VARCHAR(%d) COLLATE %s", 200, d.collation)
	}
	switch c.Kind {
	case entity.KindInteger:
		return "BIGINT"
	case entity.KindReal:
		return "DOUBLE"
	case entity.KindBool:
		return "BOOLEAN"
	case entity.KindBlob:
		return "LONGBLOB"
	case entity.KindTime:
		// entity.TimeFormat text: rows round-trip to the nanosecond.
		return "VARCHAR(40) COLLATE " + d.collation
	}
	return "LONGTEXT COLLATE " + d.collation
}

// Migrate implements sqlstore.Dialect. Several processes may start at once
// on an empty database: a named lock makes them take turns. (MySQL commits
// DDL as it goes: each statement is idempotent.)
func (d *Dialect) Migrate(ctx context.Context, tx *sql.Tx, tables []*sqlstore.Table) error {
	var got sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT GET_LOCK('tether-migrate', 60)`).Scan(&got); err != nil {
		return fmt.Errorf("lock for migration: %w", err)
	}
	if got.Int64 != 1 {
		return fmt.Errorf("lock for migration: another process held the lock tether-migrate for 60s")
	}
	defer tx.ExecContext(context.WithoutCancel(ctx), `SELECT RELEASE_LOCK('tether-migrate')`)
	key := "VARCHAR(255) COLLATE " + d.collation
	id := fmt.Sprintf("VARCHAR(%d) COLLATE %s", 200, d.collation) // server.MaxIDLength bytes
	short := "VARCHAR(64) COLLATE " + d.collation                 // device and session ids
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS _tether_tenants (tenant ` + key + ` NOT NULL PRIMARY KEY, version BIGINT NOT NULL,
			device ` + short + ` NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS _tether_devices (tenant ` + key + ` NOT NULL, device ` + short + ` NOT NULL,
			user_name ` + key + ` NOT NULL, created_at DATETIME(6) NOT NULL, seen_at DATETIME(6) NOT NULL, app_schema LONGTEXT NOT NULL,
			pulled BIGINT NOT NULL DEFAULT 0,
			PRIMARY KEY (tenant, device))
			ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS _tether_sessions (tenant ` + key + ` NOT NULL, id ` + short + ` NOT NULL, device ` + short + ` NOT NULL,
			user_name ` + key + ` NOT NULL, created_at DATETIME(6) NOT NULL, touched_at DATETIME(6) NULL, committed_at DATETIME(6) NULL,
			version BIGINT NULL, result LONGTEXT NULL, cols LONGTEXT NOT NULL, PRIMARY KEY (tenant, id), INDEX _tether_sessions__device (tenant, device, user_name, committed_at))
			ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS _tether_horizons (tenant ` + key + ` NOT NULL PRIMARY KEY, version BIGINT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS _tether_audit (tenant ` + key + ` NOT NULL, version BIGINT NOT NULL, tbl VARCHAR(64) NOT NULL,
			id ` + id + ` NOT NULL, deleted BOOLEAN NOT NULL, user_name ` + key + ` NOT NULL, device ` + short + ` NOT NULL,
			session ` + short + ` NOT NULL, at DATETIME(6) NOT NULL, PRIMARY KEY (tenant, version, tbl, id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS _tether_batches (tenant ` + key + ` NOT NULL, session ` + short + ` NOT NULL, seq INT NOT NULL,
			tbl VARCHAR(64) NOT NULL, "rows" INT NOT NULL, bytes BIGINT NOT NULL DEFAULT 0, attempt BIGINT NOT NULL DEFAULT 0,
			PRIMARY KEY (tenant, session, seq)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	}
	for _, t := range tables {
		var defs []string
		for i, c := range t.T.Columns[1:] {
			defs = append(defs, t.Cols[i+1]+" "+d.colType(c)+" NULL")
		}
		cols := strings.Join(defs, ",\n\t")
		stmts = append(stmts,
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	"_tenant" %s NOT NULL,
	"id" %s NOT NULL,
	%s,
	"_version" BIGINT NOT NULL,
	"_deleted" BOOLEAN NOT NULL DEFAULT FALSE,
	"_hlc" VARCHAR(100) COLLATE %s NOT NULL,
	"_modified_by" %s NOT NULL,
	"_origin" %s NOT NULL,
	"_session" %s NOT NULL,
	"_colvers" LONGTEXT COLLATE %s NOT NULL,
	"_reason" VARCHAR(1024) NOT NULL DEFAULT '',
	"_notify" VARCHAR(64) NOT NULL DEFAULT '',
	"_pushed" TINYINT NOT NULL DEFAULT 0,
	PRIMARY KEY ("_tenant", "id"),
	INDEX %s ("_tenant", "_version", "id")) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
				t.Name, key, id, cols, d.collation, key, short, short, d.collation, sqlstore.Quote(t.T.Name+"__changes")),
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	"_tenant" %s NOT NULL,
	"_session" %s NOT NULL,
	"_seq" INT NOT NULL,
	"_base" BIGINT NOT NULL,
	"_deleted" BOOLEAN NOT NULL,
	"_hlc" VARCHAR(100) COLLATE %s NOT NULL,
	"_changed" LONGTEXT COLLATE %s NOT NULL,
	"_present" VARCHAR(1024) NOT NULL DEFAULT '',
	"_exact" TINYINT NOT NULL DEFAULT 0,
	"id" %s NOT NULL,
	%s,
	PRIMARY KEY ("_tenant", "_session", "id"),
	INDEX %s ("_tenant", "_session", "_seq")) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
				t.Stage, key, short, d.collation, d.collation, id, cols, sqlstore.Quote(t.StageName+"__seq")))
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	for _, t := range tables { // the indexes of references
		for _, ix := range t.RefIndexes() {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.statistics WHERE table_schema = DATABASE()
				AND table_name = ? AND index_name = ?`, t.T.Name, strings.Trim(ix[0], `"`)).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				if _, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE INDEX %s ON %s (%s)`, ix[0], t.Name, ix[1])); err != nil {
					return fmt.Errorf("index a reference: %w", err)
				}
			}
		}
	}
	if have, err := d.columns(ctx, tx, "_tether_batches"); err != nil {
		return err
	} else if !have["attempt"] { // a database of the first version of this store
		if _, err := tx.ExecContext(ctx, `ALTER TABLE _tether_batches ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0`); err != nil {
			return fmt.Errorf("add column attempt to _tether_batches: %w", err)
		}
	}
	for _, t := range tables { // columns added to the schema since
		for _, table := range []string{t.T.Name, t.StageName} {
			have, err := d.columns(ctx, tx, table)
			if err != nil {
				return err
			}
			for i, c := range t.T.Columns[1:] {
				if have[c.Name] {
					continue
				}
				q := fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s %s NULL`, sqlstore.Quote(table), t.Cols[i+1], d.colType(c))
				if _, err := tx.ExecContext(ctx, q); err != nil {
					return fmt.Errorf("add column %s to %s: %w", c.Name, table, err)
				}
				if table == t.T.Name && !c.Nullable { // the rows already there take its default
					q := fmt.Sprintf(`UPDATE %s SET %s = %s`, sqlstore.Quote(table), t.Cols[i+1], c.Default())
					if _, err := tx.ExecContext(ctx, q); err != nil {
						return fmt.Errorf("default of column %s of %s: %w", c.Name, table, err)
					}
				}
			}
		}
	}
	return nil
}

// columns returns the columns table has.
func (d *Dialect) columns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	return sqlstore.Set(sqlstore.Strings(ctx, tx,
		`SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?`, table))
}
