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
	d := &dialect{pool: pool}
	s, err := sqlstore.New(ctx, stdlib.OpenDBFromPool(pool), d, schema, sqlstore.Options{
		Now:     opts.Now,
		OnClose: func() error { pool.Close(); return nil },
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	return s, nil
}

// dialect is the PostgreSQL dialect of sqlstore. It listens for other
// processes' commits on its own connection of the pool.
type dialect struct {
	pool *pgxpool.Pool
}

// notifyChannel is the PostgreSQL channel of commit notifications.
const notifyChannel = "tether_changes"

// Name implements sqlstore.Dialect.
func (*dialect) Name() string { return "postgres" }

// Rebind implements sqlstore.Dialect: ? becomes $1, $2, ...
func (*dialect) Rebind(q string) string {
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
func (*dialect) Time(t time.Time) any { return t }

// ForUpdate implements sqlstore.Dialect.
func (*dialect) ForUpdate() string { return " FOR UPDATE" }

// ReadOptions implements sqlstore.Dialect: a repeatable-read snapshot.
func (*dialect) ReadOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

// WriteOptions implements sqlstore.Dialect: read committed, the default.
func (*dialect) WriteOptions() *sql.TxOptions { return nil }

// Retryable implements sqlstore.Dialect: deadlocks and serialization
// failures.
func (*dialect) Retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// After implements sqlstore.Dialect with a row value.
func (*dialect) After(version int64, id string) (string, []any) {
	return sqlstore.RowValueAfter(version, id)
}

// Text implements sqlstore.Dialect.
func (*dialect) Text(col string) string { return col + "::text" }

// JSON implements sqlstore.Dialect: "_colvers" is jsonb.
func (*dialect) JSON(expr string) string { return expr + "::jsonb" }

// ByteOrder implements sqlstore.Dialect: COLLATE "C", whatever the
// database's collation.
func (*dialect) ByteOrder(col string) string { return col + ` COLLATE "C"` }

// tenantLock is the advisory lock key that serializes a tenant's commits.
func tenantLock(tenant string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tether-commit:" + tenant))
	return int64(h.Sum64())
}

// NextVersion implements sqlstore.Dialect: the tenant's advisory lock,
// then the next value of the _tether_version sequence.
func (*dialect) NextVersion(ctx context.Context, tx *sql.Tx, tenant string) (int64, error) {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, tenantLock(tenant)); err != nil {
		return 0, fmt.Errorf("lock tenant: %w", err)
	}
	var v int64
	err := tx.QueryRowContext(ctx, `SELECT nextval('_tether_version')`).Scan(&v)
	return v, err
}

// Stage implements sqlstore.Dialect with COPY, on tx's connection. Every
// staged copy of a row is kept; Latest reads the one of the latest batch.
func (*dialect) Stage(ctx context.Context, conn *sql.Conn, _ *sql.Tx, t *sqlstore.Table, tenant, session string, seq int, rows []wire.Row) error {
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
func (*dialect) Latest(t *sqlstore.Table) string {
	return `SELECT DISTINCT ON ("id") * FROM ` + t.Stage + ` WHERE "_tenant" = ? AND "_session" = ? ORDER BY "id", "_seq" DESC`
}

// Upsert implements sqlstore.Dialect.
func (*dialect) Upsert(t *sqlstore.Table) string {
	return `ON CONFLICT ("_tenant", "id") DO UPDATE SET ` + t.MergeSet(func(c string) string { return c + " = excluded." + c }) +
		`, "_colvers" = ` + t.Name + `."_colvers" || excluded."_colvers"`
}

// ColumnVersions implements sqlstore.Dialect.
func (*dialect) ColumnVersions(changed string) string {
	return `(SELECT coalesce(jsonb_object_agg(c, ?::bigint), '{}'::jsonb) FROM jsonb_array_elements_text(` + changed + `::jsonb) AS c)`
}

// Notify implements sqlstore.CrossProcess with pg_notify, delivered when
// the transaction commits.
func (*dialect) Notify(ctx context.Context, tx *sql.Tx, n sqlstore.Notice) error {
	payload, _ := json.Marshal(n)
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(payload))
	return err
}

// Listen implements sqlstore.CrossProcess: LISTEN on one connection of the
// pool, until it fails.
func (d *dialect) Listen(ctx context.Context, ready func(), deliver func(sqlstore.Notice)) error {
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
