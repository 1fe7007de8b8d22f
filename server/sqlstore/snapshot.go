package sqlstore

import (
	"context"
	"fmt"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Snapshot implements server.Store. The first page fixes the
// starting version (the tenant's latest) in the cursor; every page reads
// the rows as they are then, so the device must pull from Resume after the
// last page to catch what changed meanwhile.
func (s *Store) Snapshot(ctx context.Context, p server.Principal, after server.Cursor, limit, maxBytes int) (wire.Snapshot, error) {
	tx, err := s.r.BeginTx(ctx, s.d.ReadOptions())
	if err != nil {
		return wire.Snapshot{}, fmt.Errorf("snapshot: %w", err)
	}
	defer tx.Rollback()
	var out wire.Snapshot
	if after == (server.Cursor{}) {
		for _, t := range s.tables {
			var v int64
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT coalesce(max("_version"), 0), count(CASE WHEN NOT "_deleted" THEN 1 END) FROM `+t.Name+
				` WHERE "_tenant" = ?`), p.Tenant).Scan(&v, &n); err != nil {
				return wire.Snapshot{}, fmt.Errorf("snapshot %s: %w", t.schema.Name, err)
			}
			after.Version = max(after.Version, v)
			out.Total += n
		}
	}
	out.Resume = server.Cursor{Version: after.Version, Table: len(s.tables)}.String()
	pos, size := after, 0
	out.Rows = []wire.Row{}
	for idx := after.Table; idx < len(s.tables); idx++ {
		t := s.tables[idx]
		id := ""
		if idx == after.Table {
			id = after.ID
		}
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+t.selects+` FROM `+t.Name+` WHERE "_tenant" = ? AND NOT "_deleted" AND `+
			s.d.ByteOrder(`"id"`)+` > ? ORDER BY `+s.d.ByteOrder(`"id"`)+` LIMIT ?`), p.Tenant, id, limit-len(out.Rows)+1)
		if err != nil {
			return wire.Snapshot{}, fmt.Errorf("snapshot %s: %w", t.schema.Name, err)
		}
		full := false
		for rows.Next() {
			r, err := scanRow(&t.schema, rows.Scan)
			if err != nil {
				rows.Close()
				return wire.Snapshot{}, fmt.Errorf("snapshot %s: %w", t.schema.Name, err)
			}
			sz := r.Size()
			if len(out.Rows) == limit || (len(out.Rows) > 0 && size+sz > maxBytes) {
				full = true
				break
			}
			r.Reason, r.Notify = "", ""
			out.Rows = append(out.Rows, r)
			size += sz
			pos = server.Cursor{Version: after.Version, Table: idx, ID: r.ID}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return wire.Snapshot{}, fmt.Errorf("snapshot %s: %w", t.schema.Name, err)
		}
		if full {
			out.More = true
			break
		}
		if idx+1 < len(s.tables) { // this table is done
			pos = server.Cursor{Version: after.Version, Table: idx + 1}
		}
	}
	if !out.More {
		pos = server.Cursor{Version: after.Version, Table: len(s.tables)}
	}
	out.Cursor = pos.String()
	return out, nil
}
