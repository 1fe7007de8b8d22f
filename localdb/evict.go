package localdb

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/wire"
)

// evictReason is the reason logged for an edit made here to a row its
// principal may no longer see.
const evictReason = "you may no longer see this row (scopes): it was removed from this device, with the edit made here that was not pushed yet"

// evict removes row id of t from the database, physically: its
// principal may no longer see it (wire.Row.Evict). Nothing is pushed for
// it and nothing is logged, but for an edit made here and not pushed yet,
// which goes into the conflict log (strategy forbidden) before it goes.
// The rows that reference it go with it (the server evicts them too: they
// take its keys). It returns the number of rows removed.
func (db *DB) evict(ctx context.Context, tx *sql.Tx, t *table, id string, depth int) (int, error) {
	if depth > len(db.tables) {
		return 0, fmt.Errorf("evict %s %q: references loop", t.name, id)
	}
	var dirty int
	err := tx.QueryRowContext(ctx, `SELECT "_dirty" FROM `+sqlident.Quote(t.name)+` WHERE "id" = ?`, id).Scan(&dirty)
	switch {
	case err == sql.ErrNoRows:
		return 0, nil // not held here
	case err != nil:
		return 0, fmt.Errorf("evict %s %q: %w", t.name, id, err)
	}
	if dirty != 0 {
		cf := wire.Conflict{Table: t.name, ID: id, Strategy: wire.StrategyForbidden, Winner: wire.WinnerServer,
			Row: wire.Row{Table: t.name, ID: id, Evict: true}, Reason: evictReason}
		if err := db.learnConflict(ctx, tx, cf); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, c := range db.tables {
		for _, col := range c.cols {
			if col.Ref != t.name {
				continue
			}
			kids, err := queryStrings(ctx, tx, `SELECT "id" FROM `+sqlident.Quote(c.name)+` WHERE `+sqlident.Quote(col.Name)+` = ?`, id)
			if err != nil {
				return n, fmt.Errorf("evict %s %q: %w", t.name, id, err)
			}
			for _, kid := range kids {
				k, err := db.evict(ctx, tx, c, kid, depth+1)
				n += k
				if err != nil {
					return n, err
				}
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+sqlident.Quote(t.name)+` WHERE "id" = ?`, id); err != nil {
		return n, fmt.Errorf("evict %s %q: %w", t.name, id, err)
	}
	if err := forgetSentRow(ctx, tx, t.name, id); err != nil {
		return n, fmt.Errorf("evict %s %q: %w", t.name, id, err)
	}
	return n + 1, nil
}

// queryStrings returns the first column of a query's rows.
func queryStrings(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
