package localdb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/wire"
)

// Digest returns the entity.Digest of the live rows of table this database
// holds, rows not yet pushed included, and the number of rows waiting to be
// pushed. The digest is comparable with the server's.
func (s *Syncer) Digest(ctx context.Context, table string) (wire.TableDigest, int, error) {
	db := s.db
	if err := db.checkOpen("Digest"); err != nil {
		return wire.TableDigest{}, 0, err
	}
	t := db.byName[table]
	if t == nil {
		return wire.TableDigest{}, 0, fmt.Errorf("localdb: digest: unknown table %q", table)
	}
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = sqlident.Quote(c.Name)
	}
	var out wire.TableDigest
	var pending int
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, t.countDirty).Scan(&pending); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, fmt.Sprintf(`SELECT "_deleted", %s FROM %s WHERE "_deleted" = 0 ORDER BY "id"`, strings.Join(names, ", "), sqlident.Quote(t.name)))
		if err != nil {
			return err
		}
		defer rows.Close()
		d, err := entity.DigestRows(&t.ent.Table, rows.Next, rows.Scan)
		if err != nil {
			return err
		}
		out = wire.TableDigest{Table: table, Rows: d.Rows(), SHA256: d.Sum()}
		return rows.Err()
	})
	if err != nil {
		return wire.TableDigest{}, 0, fmt.Errorf("localdb: digest %s: %w", table, err)
	}
	return out, pending, nil
}
