package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
)

// StageTruncater is a dialect whose single writer lets a commit empty a
// staging table whole, when it holds the committed session's rows alone:
// SQLite frees the pages of a DELETE without WHERE at once, where a DELETE
// by session removes each row from the table and from its indexes.
type StageTruncater interface {
	// TruncateStage reports whether the dialect empties staging tables
	// whole; it serializes writers, so nothing is staged while a commit
	// runs.
	TruncateStage() bool
}

// unstage deletes the rows session staged in t, which its commit applied.
func (a *applier) unstage(ctx context.Context, t *Table) error {
	s := a.s
	if tr, ok := s.d.(StageTruncater); ok && tr.TruncateStage() {
		alone, err := s.stageAlone(ctx, a.tx, t, a.p.Tenant, a.session)
		if err != nil {
			return fmt.Errorf("unstage: %w", err)
		}
		if alone {
			_, err := a.tx.ExecContext(ctx, `DELETE FROM `+t.Stage)
			return err
		}
	}
	_, err := a.tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ?`), a.p.Tenant, a.session)
	return err
}

// stageAlone reports whether t's staging table holds rows of one session
// only, session of tenant: its first and last rows in key order, which
// the key's index finds at once, are both of it.
func (s *Store) stageAlone(ctx context.Context, tx *sql.Tx, t *Table, tenant, session string) (bool, error) {
	for _, order := range []string{"", " DESC"} {
		var ten, ses string
		err := tx.QueryRowContext(ctx, s.q(`SELECT "_tenant", "_session" FROM `+t.Stage+
			` ORDER BY "_tenant"`+order+`, "_session"`+order+` LIMIT 1`)).Scan(&ten, &ses)
		if err == sql.ErrNoRows {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if ten != tenant || ses != session {
			return false, nil
		}
	}
	return true, nil
}
