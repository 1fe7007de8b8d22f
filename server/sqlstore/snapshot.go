package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Snapshot implements server.Store. The first page fixes the
// starting version (the tenant's latest) in the cursor; every page reads
// the rows as they are then, so the device must pull from Resume after the
// last page to catch what changed meanwhile.
func (s *Store) Snapshot(ctx context.Context, p server.Principal, after server.Cursor, limit, maxBytes int, device string) (wire.Snapshot, error) {
	tx, err := s.r.BeginTx(ctx, s.d.ReadOptions())
	if err != nil {
		return wire.Snapshot{}, fmt.Errorf("snapshot: %w", err)
	}
	defer tx.Rollback()
	var out wire.Snapshot
	if after.Phase != server.PhaseNone {
		return wire.Snapshot{}, fmt.Errorf("snapshot: a cursor of a pull's phase: %w", wire.ErrBadRequest)
	}
	var keys []string
	var held *view // with scopes and a device: the keys recorded for it
	first := after == (server.Cursor{})
	if s.scope.on() {
		if keys, err = s.principalKeys(ctx, tx, p); err != nil {
			return wire.Snapshot{}, fmt.Errorf("snapshot: %w", err)
		}
		switch {
		case device != "" && first:
			// The device rebuilds with the rows of the keys its principal
			// holds now.
			held = &view{held: keys, save: true}
		case device != "":
			// The pages after the first show the keys the first recorded,
			// less those the principal lost since (the rows of those that
			// earlier pages brought go at the next pull); what it gained
			// comes with the pull after the snapshot.
			if held, err = s.deviceView(ctx, tx, p, device); err != nil {
				return wire.Snapshot{}, fmt.Errorf("snapshot: %w", err)
			}
			if held.held != nil {
				if lost := minus(held.held, keys); len(lost) > 0 {
					held.extra, held.held, held.save = union(held.extra, lost), minus(held.held, lost), true
				}
				keys = held.held
			}
		}
	}
	if first {
		if after.Version, out.Total, err = s.snapshotStart(ctx, tx, p.Tenant, keys); err != nil {
			return wire.Snapshot{}, err
		}
	}
	resume := server.Cursor{Version: after.Version, Table: len(s.tables)}
	if held != nil {
		resume.Held = keySetID(held.held)
	}
	out.Resume = resume.String()
	sp := &snapshotPage{out: &out, limit: limit, maxBytes: maxBytes, pos: after, keys: keys}
	out.Rows = []wire.Row{}
	for idx := after.Table; idx < len(s.tables) && !out.More; idx++ {
		id := ""
		if idx == after.Table {
			id = after.ID
		}
		if err := s.snapshotTable(ctx, tx, p.Tenant, idx, id, after.Version, sp); err != nil {
			return wire.Snapshot{}, fmt.Errorf("snapshot %s: %w", s.tables[idx].schema.Name, err)
		}
	}
	if !out.More {
		sp.pos = server.Cursor{Version: after.Version, Table: len(s.tables)}
	}
	out.Cursor = sp.pos.String()
	tx.Rollback()
	if err := s.saveView(ctx, p, device, held); err != nil {
		return wire.Snapshot{}, fmt.Errorf("snapshot: %w", err)
	}
	if device != "" && first {
		// The device rebuilds from this version: tombstones after it
		// stay until it has pulled from there (G13). The first page
		// records it; the next pages would write the same.
		if err := s.recordPull(ctx, p, server.Cursor{Version: after.Version}, server.Echo{Device: device}); err != nil {
			return wire.Snapshot{}, fmt.Errorf("snapshot: record the device's position: %w", err)
		}

	}
	return out, nil
}

// snapshotStart returns the tenant's latest version, where a snapshot
// starts (its counter's, not its rows' latest: a commit that wrote no row
// still moves the horizon), and how many live rows it has (of those keys
// see, with scopes).
func (s *Store) snapshotStart(ctx context.Context, tx *sql.Tx, tenant string, keys []string) (version int64, total int, err error) {
	if version, err = s.latestVersion(ctx, tx, tenant); err != nil {
		return 0, 0, fmt.Errorf("snapshot: %w", err)
	}
	for _, t := range s.tables {
		var n int
		q, args := `SELECT count(*) FROM `+t.Name+` WHERE "_tenant" = ? AND NOT "_deleted"`, []any{tenant}
		if keys != nil && s.scope.of(t) != nil {
			in, inArgs := inList("k.scope_key", keys)
			q += ` AND "id" IN (SELECT k.id FROM _tether_keys k WHERE k.tenant = ? AND k.tbl = ? AND NOT k.gone AND ` + in + `)`
			args = append(append(args, tenant, t.schema.Name), inArgs...)
		}
		if err := tx.QueryRowContext(ctx, s.q(q), args...).Scan(&n); err != nil {
			return 0, 0, fmt.Errorf("snapshot %s: %w", t.schema.Name, err)
		}
		total += n
	}
	return version, total, nil
}

// snapshotPage is a snapshot page being read.
type snapshotPage struct {
	out             *wire.Snapshot
	limit, maxBytes int
	size            int           // bytes of the rows so far
	pos             server.Cursor // where the next page starts
	keys            []string      // with scopes, the principal's keys
}

// snapshotTable reads into sp the live rows of table idx after id, in
// byte order of their ids, until the page is full (sp.out.More).
func (s *Store) snapshotTable(ctx context.Context, tx *sql.Tx, tenant string, idx int, id string, version int64, sp *snapshotPage) error {
	t, out := s.tables[idx], sp.out
	var rows *sql.Rows
	var err error
	if sp.keys != nil && s.scope.of(t) != nil {
		rows, err = s.scopedSnapshot(ctx, tx, t, tenant, sp.keys, id, sp.limit-len(out.Rows)+1)
	} else {
		rows, err = tx.QueryContext(ctx, s.q(`SELECT `+t.selects+` FROM `+t.Name+` WHERE "_tenant" = ? AND NOT "_deleted" AND "_version" > 0 AND `+
			s.d.ByteOrder(`"id"`)+` > ? ORDER BY `+s.d.ByteOrder(`"id"`)+` LIMIT ?`), tenant, id, sp.limit-len(out.Rows)+1)
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRow(&t.schema, rows.Scan)
		if err != nil {
			return err
		}
		sz := r.Size()
		if len(out.Rows) == sp.limit || (len(out.Rows) > 0 && sp.size+sz > sp.maxBytes) {
			out.More = true
			return nil
		}
		r.Reason, r.Notify = "", ""
		out.Rows = append(out.Rows, r)
		sp.size += sz
		sp.pos = server.Cursor{Version: version, Table: idx, ID: r.ID}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if idx+1 < len(s.tables) { // this table is done
		sp.pos = server.Cursor{Version: version, Table: idx + 1}
	}
	return nil
}
