package pgstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server/sqlstore"
	"github.com/tethersync/tether/wire"
)

// Store is the PostgreSQL server store.
type Store = sqlstore.Store

// Options configure Open. The zero value works.
type Options struct {
	// Now is the clock of the store's time-based rules: session expiry,
	// device activity, retention and the times it records. Default
	// time.Now; tests set it to move time without waiting.
	Now func() time.Time
}

// Open connects to the PostgreSQL database at url (a postgres:// URL or a
// key=value connection string; pool size and timeouts as pgx reads them)
// and creates or upgrades the tables of schema. It adds missing tables and
// columns and never drops any.
func Open(ctx context.Context, url string, schema entity.Schema, opts Options) (*Store, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	d := &Dialect{pool: pool}
	s, err := sqlstore.New(ctx, stdlib.OpenDBFromPool(pool), d, schema, sqlstore.Options{
		Now:     opts.Now,
		OnClose: func() error { pool.Close(); return nil },
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	return s, nil
}

// Dialect is the PostgreSQL dialect of sqlstore. It listens for other
// processes' commits on its own connection of the pool.
type Dialect struct {
	pool *pgxpool.Pool
}

// notifyChannel is the PostgreSQL channel of commit notifications.
const notifyChannel = "tether_changes"

// Name implements sqlstore.Dialect.
func (*Dialect) Name() string { return "postgres" }

// Rebind implements sqlstore.Dialect: ? becomes $1, $2, ...
func (*Dialect) Rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Time implements sqlstore.Dialect: timestamptz.
func (*Dialect) Time(t time.Time) any { return t }

// ForUpdate implements sqlstore.Dialect.
func (*Dialect) ForUpdate() string { return " FOR UPDATE" }

// ReadOptions implements sqlstore.Dialect: a repeatable-read snapshot.
func (*Dialect) ReadOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

// WriteOptions implements sqlstore.Dialect: read committed, the default.
func (*Dialect) WriteOptions() *sql.TxOptions { return nil }

// Retryable implements sqlstore.Dialect: deadlocks and serialization
// failures.
func (*Dialect) Retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// After implements sqlstore.Dialect with a row value.
func (*Dialect) After(version int64, id string) (string, []any) {
	return sqlstore.RowValueAfter(version, id)
}

// Text implements sqlstore.Dialect.
func (*Dialect) Text(col string) string { return col + "::text" }

// JSON implements sqlstore.Dialect: "_colvers" is jsonb.
func (*Dialect) JSON(expr string) string { return expr + "::jsonb" }

// ByteOrder implements sqlstore.Dialect: COLLATE "C", whatever the
// database's collation.
func (*Dialect) ByteOrder(col string) string { return col + ` COLLATE "C"` }

// tenantLock is the advisory lock key that serializes a tenant's commits.
func tenantLock(tenant string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tether-commit:" + tenant))
	return int64(h.Sum64())
}

// NextVersion implements sqlstore.Dialect: the tenant's advisory lock,
// then the next value of the _tether_version sequence.
func (*Dialect) NextVersion(ctx context.Context, tx *sql.Tx, tenant string) (int64, error) {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, tenantLock(tenant)); err != nil {
		return 0, fmt.Errorf("lock tenant: %w", err)
	}
	var v int64
	err := tx.QueryRowContext(ctx, `SELECT nextval('_tether_version')`).Scan(&v)
	return v, err
}

// Stage implements sqlstore.Dialect with COPY, on tx's connection. Every
// staged copy of a row is kept; Latest reads the one of the latest batch.
func (*Dialect) Stage(ctx context.Context, conn *sql.Conn, _ *sql.Tx, t *sqlstore.Table, tenant, session string, seq int, rows []wire.Row) error {
	return conn.Raw(func(dc any) error {
		i := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(rows) {
				return nil, nil
			}
			i++
			return t.StageValues(make([]any, 0, len(t.StageCols)), tenant, session, seq, rows[i-1]), nil
		})
		_, err := dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{t.StageName}, t.StageCols, src)
		return err
	})
}

// Latest implements sqlstore.Dialect: the copy of the latest batch.
func (*Dialect) Latest(t *sqlstore.Table) string {
	return `SELECT DISTINCT ON ("id") * FROM ` + t.Stage + ` WHERE "_tenant" = ? AND "_session" = ? ORDER BY "id", "_seq" DESC`
}

// Upsert implements sqlstore.Dialect.
func (*Dialect) Upsert(t *sqlstore.Table) string {
	return `ON CONFLICT ("_tenant", "id") DO UPDATE SET ` + t.Assignments(func(c string) string { return "excluded." + c }, sqlstore.Bookkeeping...) +
		`, "_colvers" = ` + t.Name + `."_colvers" || excluded."_colvers"`
}

// ColumnVersions implements sqlstore.Dialect.
func (*Dialect) ColumnVersions(changed string) string {
	return `(SELECT coalesce(jsonb_object_agg(c, ?::bigint), '{}'::jsonb) FROM jsonb_array_elements_text(` + changed + `::jsonb) AS c)`
}

// Notify implements sqlstore.CrossProcess with pg_notify, delivered when
// the transaction commits.
func (*Dialect) Notify(ctx context.Context, tx *sql.Tx, n sqlstore.Notice) error {
	payload, _ := json.Marshal(n)
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(payload))
	return err
}

// Listen implements sqlstore.CrossProcess: LISTEN on one connection of the
// pool, until it fails.
func (d *Dialect) Listen(ctx context.Context, ready func(), deliver func(sqlstore.Notice)) error {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	ready()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			conn.Conn().Close(context.Background()) // never return a listening connection to the pool
			return err
		}
		var msg sqlstore.Notice
		if json.Unmarshal([]byte(n.Payload), &msg) == nil {
			deliver(msg)
		}
	}
}

func pgType(k entity.Kind) string {
	switch k {
	case entity.KindInteger:
		return "bigint"
	case entity.KindReal:
		return "double precision"
	case entity.KindBool:
		return "boolean"
	case entity.KindBlob:
		return "bytea"
	}
	// Times stay in entity.TimeFormat text: timestamptz keeps only
	// microseconds, and rows must round-trip exactly.
	return "text"
}

const ddl = `
CREATE SEQUENCE IF NOT EXISTS _tether_version;
CREATE TABLE IF NOT EXISTS _tether_devices (
	tenant text NOT NULL, device text NOT NULL, user_name text NOT NULL,
	created_at timestamptz NOT NULL, seen_at timestamptz NOT NULL, PRIMARY KEY (tenant, device));
CREATE TABLE IF NOT EXISTS _tether_sessions (
	tenant text NOT NULL, id text NOT NULL, device text NOT NULL, user_name text NOT NULL,
	created_at timestamptz NOT NULL, committed_at timestamptz, version bigint, result text,
	PRIMARY KEY (tenant, id));
ALTER TABLE _tether_sessions ADD COLUMN IF NOT EXISTS touched_at timestamptz;
ALTER TABLE _tether_sessions ADD COLUMN IF NOT EXISTS cols text NOT NULL DEFAULT '';
ALTER TABLE _tether_devices ADD COLUMN IF NOT EXISTS app_schema text NOT NULL DEFAULT '';
ALTER TABLE _tether_devices ADD COLUMN IF NOT EXISTS pulled bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS _tether_horizons (tenant text PRIMARY KEY, version bigint NOT NULL);
CREATE INDEX IF NOT EXISTS _tether_sessions__open ON _tether_sessions (tenant, device) WHERE committed_at IS NULL;
CREATE TABLE IF NOT EXISTS _tether_audit (
	tenant text NOT NULL, version bigint NOT NULL, tbl text NOT NULL, id text NOT NULL, deleted boolean NOT NULL,
	user_name text NOT NULL, device text NOT NULL, session text NOT NULL, at timestamptz NOT NULL,
	PRIMARY KEY (tenant, version, tbl, id));
CREATE TABLE IF NOT EXISTS _tether_batches (
	tenant text NOT NULL, session text NOT NULL, seq integer NOT NULL, tbl text NOT NULL, rows integer NOT NULL,
	PRIMARY KEY (tenant, session, seq));
ALTER TABLE _tether_batches ADD COLUMN IF NOT EXISTS bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE _tether_batches ADD COLUMN IF NOT EXISTS attempt bigint NOT NULL DEFAULT 0;
`

// Migrate implements sqlstore.Dialect. Several processes may start at once
// on an empty database: an advisory lock makes them take turns.
func (*Dialect) Migrate(ctx context.Context, tx *sql.Tx, tables []*sqlstore.Table) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7354)`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("create bookkeeping tables: %w", err)
	}
	// Earlier versions keyed devices by their id alone.
	var keys int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = '_tether_devices'::regclass AND i.indisprimary`).Scan(&keys); err != nil {
		return fmt.Errorf("upgrade _tether_devices: %w", err)
	}
	if keys == 1 {
		if _, err := tx.ExecContext(ctx, `ALTER TABLE _tether_devices DROP CONSTRAINT _tether_devices_pkey, ADD PRIMARY KEY (tenant, device)`); err != nil {
			return fmt.Errorf("upgrade _tether_devices: %w", err)
		}
	}
	for _, t := range tables {
		if err := migrateTable(ctx, tx, t); err != nil {
			return fmt.Errorf("table %s: %w", t.T.Name, err)
		}
	}
	return nil
}

func migrateTable(ctx context.Context, tx *sql.Tx, t *sqlstore.Table) error {
	var defs []string
	for i, c := range t.T.Columns {
		def := t.Cols[i] + " " + pgType(c.Kind)
		if c.Name == "id" {
			def += " NOT NULL"
		}
		defs = append(defs, def)
	}
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	_tenant text NOT NULL,
	%s,
	_version bigint NOT NULL,
	_deleted boolean NOT NULL DEFAULT false,
	_hlc text NOT NULL,
	_modified_by text NOT NULL,
	_origin text NOT NULL,
	_session text NOT NULL,
	PRIMARY KEY (_tenant, id));
CREATE INDEX IF NOT EXISTS %s ON %s (_tenant, _version, id);
CREATE TABLE IF NOT EXISTS %s (
	_tenant text NOT NULL,
	_session text NOT NULL,
	_seq integer NOT NULL,
	_base bigint NOT NULL,
	_deleted boolean NOT NULL,
	_hlc text NOT NULL,
	%s);
CREATE INDEX IF NOT EXISTS %s ON %s (_tenant, _session, id, _seq)`,
		t.Name, strings.Join(defs, ",\n\t"),
		sqlstore.Quote(t.T.Name+"__changes"), t.Name,
		t.Stage, strings.Join(defs, ",\n\t"),
		sqlstore.Quote(t.StageName+"__session"), t.Stage)
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	stmts := []string{
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS _colvers jsonb NOT NULL DEFAULT '{}'`, t.Name),
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS _reason text NOT NULL DEFAULT ''`, t.Name),
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS _notify text NOT NULL DEFAULT ''`, t.Name),
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS _pushed integer NOT NULL DEFAULT 0`, t.Name),
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS _exact integer NOT NULL DEFAULT 0`, t.Stage),
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS _changed text NOT NULL DEFAULT '[]'`, t.Stage),
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS _present text NOT NULL DEFAULT ''`, t.Stage),
	}
	for _, ix := range t.RefIndexes() {
		stmts = append(stmts, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (%s)`, ix[0], t.Name, ix[1]))
	}
	for i, c := range t.T.Columns { // the rows already there take a new column's default
		stmts = append(stmts, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s DEFAULT %s`, t.Name, t.Cols[i], pgType(c.Kind), c.Default()),
			fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s`, t.Stage, t.Cols[i], pgType(c.Kind)))
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("upgrade: %w", err)
		}
	}
	return nil
}
