package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Digest implements server.Store: the table's rows of the tenant in
// byte order of their ids, whatever the database's collation.
func (s *Store) Digest(ctx context.Context, p server.Principal, table string, columns []string) (wire.TableDigest, error) {
	t := s.byName[table]
	if t == nil {
		return wire.TableDigest{}, fmt.Errorf("digest: unknown table %.100q: %w", table, wire.ErrBadRequest)
	}
	sub, list := t.schema, t.columnList()
	if columns != nil { // the columns a device has
		if len(columns) == 0 {
			return wire.TableDigest{}, fmt.Errorf("digest %s: no columns (want id first): %w", table, wire.ErrBadRequest)
		}
		sub.Columns = nil
		var quoted []string
		for i, name := range columns {
			c, ok := t.schema.Column(name)
			if !ok || (i == 0) != (name == "id") {
				return wire.TableDigest{}, fmt.Errorf("digest %s: column %.100q: unknown, or id not first: %w", table, name, wire.ErrBadRequest)
			}
			if slices.Contains(columns[:i], name) {
				return wire.TableDigest{}, fmt.Errorf("digest %s: column %q named twice: %w", table, name, wire.ErrBadRequest)
			}
			sub.Columns = append(sub.Columns, c)
			quoted = append(quoted, sqlident.Quote(name))
		}
		list = strings.Join(quoted, ", ")
	}
	tx, err := s.r.BeginTx(ctx, s.d.ReadOptions())
	if err != nil {
		return wire.TableDigest{}, fmt.Errorf("digest %s: %w", table, err)
	}
	defer tx.Rollback()
	q, args := `SELECT "_deleted", `+list+` FROM `+t.Name+` WHERE "_tenant" = ? AND NOT "_deleted"`, []any{p.Tenant}
	if s.scope.of(t) != nil { // the rows the principal sees
		keys, err := s.principalKeys(ctx, tx, p)
		if err != nil {
			return wire.TableDigest{}, fmt.Errorf("digest %s: %w", table, err)
		}
		in, inArgs := inList("k.scope_key", keys)
		q += ` AND "id" IN (SELECT k.id FROM _tether_keys k WHERE k.tenant = ? AND k.tbl = ? AND NOT k.gone AND ` + in + `)`
		args = append(append(args, p.Tenant, t.schema.Name), inArgs...)
	}
	rows, err := tx.QueryContext(ctx, s.q(q+` ORDER BY `+s.d.ByteOrder(`"id"`)), args...)
	if err != nil {
		return wire.TableDigest{}, fmt.Errorf("digest %s: %w", table, err)
	}
	defer rows.Close()
	d, err := entity.DigestRows(&sub, rows.Next, rows.Scan)
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return wire.TableDigest{}, fmt.Errorf("digest %s: %w", table, err)
	}
	return wire.TableDigest{Table: table, Rows: d.Rows(), SHA256: d.Sum()}, nil
}
