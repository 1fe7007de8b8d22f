package sqlstore

import (
	"context"
	"database/sql"
)

// Compactor is a Dialect whose database keeps the pages that deleted rows
// freed inside its file until it is told to give them back (SQLite with
// auto_vacuum=INCREMENTAL). Sweep calls Compact on the writer pool after
// its deletions; Compact gives back a bounded number of pages, and the
// next sweep goes on. Databases that reclaim space on their own
// (PostgreSQL's and MySQL's autovacuum and purge) need no Compactor.
type Compactor interface {
	// Compact returns up to a bounded number of free pages to the file
	// system, and reports how many it returned.
	Compact(ctx context.Context, db *sql.DB) (pages int, err error)
}

// compact runs the dialect's Compact, if it has one.
func (s *Store) compact(ctx context.Context) (int, error) {
	c, ok := s.d.(Compactor)
	if !ok {
		return 0, nil
	}
	return c.Compact(ctx, s.w)
}
