package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Changes implements server.Store. It reads every table in one read
// transaction, so a page is a consistent snapshot, and merges them in
// commit order. A table's rows are read until they pass maxBytes; the
// page then ends before any row that could come after the first row that
// table did not read. Without scopes, the device's own rows are left out
// in the query, and the last page (more false) returns a cursor past the
// tenant's latest version in that snapshot, so that it passes the own
// rows after the last row sent too.
func (s *Store) Changes(ctx context.Context, p server.Principal, after server.Cursor, limit, maxBytes int, echo server.Echo) ([]wire.Row, server.Cursor, bool, error) {
	tx, err := s.r.BeginTx(ctx, s.d.ReadOptions())
	if err != nil {
		return nil, after, false, fmt.Errorf("changes: %w", err)
	}
	defer tx.Rollback()
	latest, err := s.checkHorizon(ctx, tx, p.Tenant, after)
	if err != nil {
		return nil, after, false, err
	}
	record, err := s.mustRecord(ctx, tx, p, after, echo)
	if err != nil {
		return nil, after, false, err
	}
	var v *view
	from := after
	switch {
	case s.scope.on():
		if v, from, err = s.scopeView(ctx, tx, p, echo.Device, after); err != nil {
			return nil, after, false, err
		}
	case after.Phase != server.PhaseNone || after.Held != "":
		// Given while the server had scopes: the device holds only some
		// rows, and those it did not may be older than its cursor.
		return nil, after, false, fmt.Errorf("the cursor was given under scopes, which the server no longer has: rebuild from a snapshot: %w", wire.ErrHistoryPurged)
	}
	var out []wire.Row
	var next server.Cursor
	var more bool
	if from.Phase != server.PhaseNone {
		// The device's keys change: the rows it lost go, those it gained
		// come, before the pull goes on.
		if out, next, err = s.phasePage(ctx, tx, p, v, from, limit, maxBytes); err != nil {
			return nil, after, false, fmt.Errorf("changes: %w", err)
		}
		more = true
	} else {
		// With scopes, a scoped table's read may end before its last
		// change (one not captured yet, of version 0, is left out after
		// its key's LIMIT): the page cannot tell that it read every
		// table to its end, so own rows are passed over as they are
		// read.
		pr := &pageReader{after: from, limit: limit, maxBytes: maxBytes, echo: echo, passOwn: v == nil}
		if pr.passOwn {
			pr.notOwn, pr.notOwnArgs = notOwn(echo)
		}
		for _, t := range s.tables {
			var err error
			if v != nil && s.scope.of(t) != nil {
				err = s.readScoped(ctx, tx, t, p.Tenant, v, pr)
			} else {
				err = s.readChanges(ctx, tx, t, p.Tenant, pr)
			}
			if err != nil {
				return nil, after, false, fmt.Errorf("changes %s: %w", t.schema.Name, err)
			}
		}
		out, next, more = page(pr.all, from, limit, maxBytes, pr.bound)
		if !more && pr.passOwn {
			// Every table was read to its end: the cursor passes every
			// version of this snapshot, also the device's own rows that
			// the query left out.
			next = server.Cursor{Version: latest, Table: len(s.tables)}
		}
	}
	tx.Rollback()
	if v != nil {
		next.Held = keySetID(v.held) // what the device holds the rows of, at next
	}
	if err := s.saveView(ctx, p, echo.Device, v); err != nil {
		return nil, after, false, fmt.Errorf("changes: %w", err)
	}
	if record {
		if err := s.recordPull(ctx, p, after, echo); err != nil {
			return nil, after, false, fmt.Errorf("changes: record the device's position: %w", err)
		}
	}
	return out, next, more, nil
}

// checkHorizon returns the tenant's latest version. It refuses a cursor
// before the tenant's horizon: tombstones before it may be gone, so the
// pull would miss deletions. So would the empty cursor of a device that
// pushed before its first pull: it starts from a snapshot too. It refuses
// a cursor past the tenant's latest version too, before anything is
// recorded of it: no pull of the tenant made it (the server's database
// was restored from an older backup, or the cursor was forged), and a
// device position recorded there would purge what other devices have not
// pulled yet.
func (s *Store) checkHorizon(ctx context.Context, tx *sql.Tx, tenant string, after server.Cursor) (int64, error) {
	var horizon int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT version FROM _tether_horizons WHERE tenant = ?`), tenant).Scan(&horizon)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("changes: %w", err)
	}
	if after.Version < horizon {
		return 0, fmt.Errorf("the cursor is at version %d, and deletions before version %d were purged: rebuild from a snapshot: %w",
			after.Version, horizon, wire.ErrHistoryPurged)
	}
	latest, err := s.latestVersion(ctx, tx, tenant)
	if err != nil {
		return 0, fmt.Errorf("changes: %w", err)
	}
	if after.Version > latest {
		return 0, fmt.Errorf("the cursor is at version %d, past the tenant's latest version %d (a server restored from an older backup?): rebuild from a snapshot: %w",
			after.Version, latest, wire.ErrHistoryPurged)
	}
	return latest, nil
}

// mustRecord checks that the pulling device is registered (its position
// decides when tombstones go) and reports whether its position or its
// activity must be recorded after the pull.
func (s *Store) mustRecord(ctx context.Context, tx *sql.Tx, p server.Principal, after server.Cursor, echo server.Echo) (bool, error) {
	if echo.Device == "" {
		return false, nil
	}
	var pulled int64
	var seen any
	err := tx.QueryRowContext(ctx, s.q(`SELECT pulled, seen_at FROM _tether_devices WHERE tenant = ? AND device = ?`), p.Tenant, echo.Device).Scan(&pulled, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("device %s is not registered for this tenant: %w", echo.Device, wire.ErrDeviceUnknown)
	}
	if err != nil {
		return false, fmt.Errorf("changes: %w", err)
	}
	at, err := timeOf(seen)
	if err != nil {
		return false, fmt.Errorf("changes: device %s: %w", echo.Device, err)
	}
	return pulled < after.Version || at.Before(s.now().Add(-echo.SeenEvery)), nil
}

// pageReader collects the rows of a pull page from every table.
type pageReader struct {
	after           server.Cursor
	limit, maxBytes int
	echo            server.Echo
	// passOwn has readChanges leave the device's own rows out in its
	// query (notOwn, the condition with its arguments, made once a page)
	// rather than read them and pass over them.
	passOwn    bool
	notOwn     string
	notOwnArgs []any

	all   []changed
	read  int            // bytes read so far, of every table: memory stays near maxBytes
	bound *server.Cursor // the last position read of a table cut short by maxBytes
}

// readChanges reads into pr the rows of t after the cursor, up to
// limit+1, stopping once the bytes read of every table pass maxBytes.
func (s *Store) readChanges(ctx context.Context, tx *sql.Tx, t *Table, tenant string, pr *pageReader) error {
	where, args := s.afterClause(t.idx, pr.after)
	q := s.q(`SELECT ` + t.selects + `, "_session", "_pushed" FROM ` + t.Name + ` WHERE "_tenant" = ? AND ` + where + pr.notOwn + ` ORDER BY "_version", "id" LIMIT ?`)
	rows, err := tx.QueryContext(ctx, q, slices.Concat([]any{tenant}, args, pr.notOwnArgs, []any{pr.limit + 1})...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var session string
		var pushed int64
		r, err := scanRow(&t.schema, rows.Scan, &session, &pushed)
		if err != nil {
			return err
		}
		c := changed{pos: server.Cursor{Version: r.Version, Table: t.idx, ID: r.ID}, row: r, size: r.Size(),
			echo: pr.own(pushed, r.Device, session)}
		pr.all = append(pr.all, c)
		// Each table gives at least one row, so that the page knows how
		// far it may go.
		if pr.read += c.size; pr.read > pr.maxBytes {
			if pr.bound == nil || c.pos.Before(*pr.bound) {
				pr.bound = &c.pos
			}
			break
		}
	}
	return rows.Err()
}

// own reports whether a row read is the pulling device's own, as it
// pushed it: kept exactly as pushed (pushed is 1), from its device, of a
// session it names. notOwn is the same rule in SQL.
func (pr *pageReader) own(pushed int64, device, session string) bool {
	return pushed == 1 && device == pr.echo.Device && pr.echo.Sessions[session]
}

// notOwn returns the condition that passes over the rows of echo's
// sessions kept as the device pushed them, in the database: a device
// that pushed 100,000 rows does not have the server read them back. The
// CASE makes a NULL written directly in the database count as not own.
func notOwn(echo server.Echo) (string, []any) {
	args := []any{echo.Device}
	for id, own := range echo.Sessions {
		if own {
			args = append(args, id)
		}
	}
	if echo.Device == "" || len(args) == 1 {
		return "", nil
	}
	return ` AND CASE WHEN "_pushed" = 1 AND "_origin" = ? AND "_session" IN (` + marks(len(args)-1) + `) THEN 1 ELSE 0 END = 0`, args
}

// recordPull records the cursor a device sent, which proves it stored
// everything before it (an answer it never got proves nothing): tombstones
// before it may go, as far as this device is concerned. A device that
// pulls is seen: a long pull keeps it active (seen_at may lag by
// echo.SeenEvery: a pull that moves nothing writes nothing).
func (s *Store) recordPull(ctx context.Context, p server.Principal, after server.Cursor, echo server.Echo) error {
	// moved_at before pulled: MySQL assigns left to right, with the
	// values just assigned.
	now := s.d.Time(s.now())
	return s.exec(ctx, `UPDATE _tether_devices SET seen_at = ?, moved_at = CASE WHEN pulled < ? THEN ? ELSE moved_at END,
		pulled = CASE WHEN pulled < ? THEN ? ELSE pulled END WHERE tenant = ? AND device = ?`,
		now, after.Version, now, after.Version, after.Version, p.Tenant, echo.Device)
}

// afterClause returns the condition selecting the rows of table idx that
// come after cursor c in commit order.
func (s *Store) afterClause(idx int, c server.Cursor) (string, []any) {
	switch {
	case c.Version == 0: // no commit is version 0: external writes not captured yet (see Capturing)
		return `"_version" > ?`, []any{0}
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
// and none after bound (when a table's reading stopped there). It ends
// the page before the rows of the last version it would hold in part,
// unless that is the page's only version: the cursor is then Partial.
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
	partial := false
	if more && n > 0 {
		// Rows after the page may be of its last version: the next row
		// read, or a row after bound, which comes at bound's version or
		// later.
		last := all[n-1].pos.Version
		cont := n < len(all) && all[n].pos.Version == last || bound != nil && bound.Version <= last
		if cont {
			m := n - 1
			for m >= 0 && all[m].pos.Version == last {
				m--
			}
			if m >= 0 {
				n = m + 1 // the version goes whole into the next page
			} else {
				partial = true
			}
		}
	}
	out := make([]wire.Row, 0, n)
	for _, it := range all[:n] {
		if !it.echo { // passed over, the cursor moves past it
			out = append(out, it.row)
		}
	}
	if n > 0 {
		after = all[n-1].pos
	}
	after.Partial = partial
	return out, after, more
}
