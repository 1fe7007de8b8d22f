package localdb

import (
	"context"
	"database/sql"

	"github.com/tethersync/tether/internal/sqlident"
)

// FinishPushForTest marks every row clean, as an acknowledged push would.
func (s *Syncer) FinishPushForTest(ctx context.Context) error {
	db := s.db
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if err := setSuppress(ctx, tx, true); err != nil {
			return err
		}
		for _, t := range db.tables {
			if _, err := tx.ExecContext(ctx, `UPDATE `+sqlident.Quote(t.name)+` SET "_dirty" = 0`); err != nil {
				return err
			}
		}
		return setSuppress(ctx, tx, false)
	})
}
