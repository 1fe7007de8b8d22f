package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/tethersync/tether/server/sqlstore"
	"github.com/tethersync/tether/wire"
)

// dialect is the PostgreSQL dialect of sqlstore. It listens for other
// processes' commits on its own connection of the pool.
type dialect struct {
	pool *pgxpool.Pool
}

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

// NextVersion implements sqlstore.Dialect: the tenant's counter, whose
// row lock serializes the tenant's commits until each ends.
func (*dialect) NextVersion(ctx context.Context, tx *sql.Tx, tenant string) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, `INSERT INTO _tether_tenants (tenant, version, device) VALUES ($1, 1, '')
		ON CONFLICT (tenant) DO UPDATE SET version = _tether_tenants.version + 1 RETURNING version`, tenant).Scan(&v)
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

// AnalyzeStage implements sqlstore.StageAnalyzer.
func (*dialect) AnalyzeStage(ctx context.Context, db *sql.DB, t *sqlstore.Table) error {
	_, err := db.ExecContext(ctx, `ANALYZE `+t.Stage+`, `+t.Name)
	return err
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
