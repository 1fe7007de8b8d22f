package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Changes implements server.Store. It reads every table in one read
// transaction, so a page is a consistent snapshot, and merges them in
// commit order. A table's rows are read until they pass maxBytes; the
// page then ends before any row that could come after the first row that
// table did not read.
func (s *Store) Changes(ctx context.Context, p server.Principal, after server.Cursor, limit, maxBytes int, echo server.Echo) ([]wire.Row, server.Cursor, bool, error) {
	tx, err := s.r.BeginTx(ctx, s.d.ReadOptions())
	if err != nil {
		return nil, after, false, fmt.Errorf("changes: %w", err)
	}
	defer tx.Rollback()
	// Tombstones before the horizon may be gone: a cursor before it would
	// miss deletions. So would the empty cursor of a device that pushed
	// before its first pull: it starts from a snapshot too.
	var horizon int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT version FROM _tether_horizons WHERE tenant = ?`), p.Tenant).Scan(&horizon)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, after, false, fmt.Errorf("changes: %w", err)
	}
	if after.Version < horizon {
		return nil, after, false, fmt.Errorf("the cursor is at version %d, and deletions before version %d were purged: rebuild from a snapshot: %w",
			after.Version, horizon, wire.ErrHistoryPurged)
	}
	// The pulling device must be registered: its position decides when
	// tombstones go.
	record := false
	if echo.Device != "" {
		var pulled int64
		var seen any
		err := tx.QueryRowContext(ctx, s.q(`SELECT pulled, seen_at FROM _tether_devices WHERE tenant = ? AND device = ?`), p.Tenant, echo.Device).Scan(&pulled, &seen)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, after, false, fmt.Errorf("device %s is not registered for this tenant: %w", echo.Device, wire.ErrDeviceUnknown)
		}
		if err != nil {
			return nil, after, false, fmt.Errorf("changes: %w", err)
		}
		at, err := timeOf(seen)
		if err != nil {
			return nil, after, false, fmt.Errorf("changes: device %s: %w", echo.Device, err)
		}
		record = pulled < after.Version || at.Before(s.now().Add(-echo.SeenEvery))
	}
	var all []changed
	var bound *server.Cursor // the last position read of a table cut short by maxBytes
	read := 0                // bytes read so far, of every table: memory stays near maxBytes
	for _, t := range s.tables {
		where, args := s.afterClause(t.idx, after)
		q := s.q(`SELECT ` + t.selects + `, "_session", "_pushed" FROM ` + t.Name + ` WHERE "_tenant" = ? AND ` + where + ` ORDER BY "_version", "id" LIMIT ?`)
		rows, err := tx.QueryContext(ctx, q, append(append([]any{p.Tenant}, args...), limit+1)...)
		if err != nil {
			return nil, after, false, fmt.Errorf("changes %s: %w", t.schema.Name, err)
		}
		taken := 0
		for rows.Next() {
			var session string
			var pushed int64
			r, err := scanRow(&t.schema, rows.Scan, &session, &pushed)
			if err != nil {
				rows.Close()
				return nil, after, false, fmt.Errorf("changes %s: %w", t.schema.Name, err)
			}
			c := changed{pos: server.Cursor{Version: r.Version, Table: t.idx, ID: r.ID}, row: r, size: r.Size(),
				echo: pushed == 1 && r.Device == echo.Device && echo.Sessions[session]}
			all = append(all, c)
			taken++
			// Each table gives at least one row, so that the page knows
			// how far it may go.
			if read += c.size; read > maxBytes && taken > 0 {
				if bound == nil || c.pos.Before(*bound) {
					bound = &c.pos
				}
				break
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, after, false, fmt.Errorf("changes %s: %w", t.schema.Name, err)
		}
	}
	out, next, more := page(all, after, limit, maxBytes, bound)
	tx.Rollback()
	if record {
		// The cursor a device sends proves it stored everything before
		// it (an answer it never got proves nothing): tombstones before
		// it may go, as far as this device is concerned. A device that
		// pulls is seen: a long pull keeps it active (seen_at may lag by
		// echo.SeenEvery: a pull that moves nothing writes nothing).
		if _, err := s.w.ExecContext(ctx, s.q(`UPDATE _tether_devices SET seen_at = ?, pulled = CASE WHEN pulled < ? THEN ? ELSE pulled END
			WHERE tenant = ? AND device = ?`), s.d.Time(s.now()), after.Version, after.Version, p.Tenant, echo.Device); err != nil {
			return nil, after, false, fmt.Errorf("changes: record the device's position: %w", err)
		}
	}
	return out, next, more, nil
}

// afterClause returns the condition selecting the rows of table idx that
// come after cursor c in commit order.
func (s *Store) afterClause(idx int, c server.Cursor) (string, []any) {
	switch {
	case idx < c.Table:
		return `"_version" > ?`, []any{c.Version}
	case idx == c.Table:
		return s.d.After(c.Version, c.ID)
	default:
		return `"_version" >= ?`, []any{c.Version}
	}
}

// RowValueAfter is Dialect.After as a row value, which SQLite and
// PostgreSQL seek their index with.
func RowValueAfter(version int64, id string) (string, []any) {
	return `("_version", "id") > (?, ?)`, []any{version, id}
}

// changed is a row read for a pull page, with its position and size.
type changed struct {
	pos  server.Cursor
	row  wire.Row
	size int
	echo bool // the pulling device's own row, as it pushed it: not sent
}

// page orders the rows read from every table by commit order and keeps the
// first of them: at most limit, at most maxBytes but for the first row,
// and none after bound (when a table's reading stopped there).
func page(all []changed, after server.Cursor, limit, maxBytes int, bound *server.Cursor) ([]wire.Row, server.Cursor, bool) {
	sort.Slice(all, func(i, j int) bool { return all[i].pos.Before(all[j].pos) })
	n, size, sent := 0, 0, 0
	for n < len(all) && n < limit {
		c := all[n]
		if n > 0 && bound != nil && bound.Before(c.pos) {
			break
		}
		if !c.echo { // the device's own rows are not sent: they take no room
			if sent > 0 && size+c.size > maxBytes {
				break
			}
			size += c.size
			sent++
		}
		n++
	}
	more := n < len(all) || bound != nil
	out := make([]wire.Row, 0, n)
	for _, it := range all[:n] {
		if !it.echo { // passed over, the cursor moves past it
			out = append(out, it.row)
		}
	}
	if n > 0 {
		after = all[n-1].pos
	}
	return out, after, more
}
