package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server/sqlstore"
)

// Store is the PostgreSQL server store.
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

// Open connects to the PostgreSQL database at url (a postgres:// URL or a
// key=value connection string; pool size and timeouts as pgx reads them)
// and creates or upgrades the tables of schema. It adds missing tables and
// columns and never drops any. The pool needs at least two connections
// (pool_max_conns >= 2): one holds the migration lock while another
// migrates, and live events keep one listening.
func Open(ctx context.Context, url string, schema entity.Schema, opts Options) (*Store, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	d := &dialect{pool: pool}
	s, err := sqlstore.New(ctx, stdlib.OpenDBFromPool(pool), d, schema, sqlstore.Options{
		Now:     opts.Now,
		Logger:  opts.Logger,
		OnClose: func() error { pool.Close(); return nil },
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	return s, nil
}
