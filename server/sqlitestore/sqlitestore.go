package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/server/sqlstore"
)

// Store is the embedded server store.
type Store = sqlstore.Store

// Options configure Open. The zero value works.
type Options struct {
	// Now is the clock of the store's time-based rules: session expiry,
	// device activity, retention and the times it records. Default
	// time.Now; tests set it to move time without waiting.
	Now func() time.Time
}

// Open opens or creates the server database at path with tables for
// schema. It adds missing tables and columns and never drops any.
func Open(path string, schema entity.Schema, opts Options) (*Store, error) {
	open := func(txlock string) (*sql.DB, error) {
		return sqlitedriver.Open(path, sqlitedriver.Config{WAL: true, BusyTimeout: 10 * time.Second,
			TxLock: txlock, Synchronous: "NORMAL", StmtCache: 64})
	}
	w, err := open("immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1) // the single writer
	r, err := open("deferred")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	s, err := sqlstore.New(context.Background(), w, dialect{}, schema, sqlstore.Options{Read: r, Now: opts.Now})
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	return s, nil
}
