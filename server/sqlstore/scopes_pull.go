package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// view is what a pull of a scoped store may see: the principal's keys,
// and the keys the pulling device holds the rows of.
type view struct {
	keys []string // the principal's, now
	held []string // the device's; nil before its first pull
	// pending are the keys a phase brings the device to (Cursor.Keys);
	// nil when no phase is under way.
	pending []string
	// extra are keys the device may hold rows of besides held: those of
	// phases started over before their end, or of later pages of a
	// snapshot. The next phases evict what of them the principal may not
	// see.
	extra []string
	// unsure are keys of held whose rows phases started over may have
	// evicted: the next phases grant them again.
	unsure []string
	save   bool // held, pending, extra or unsure changed: written after the pull
}

// scopeView reads the principal's keys and the device's, in tx, and
// decides where the pull goes: on from the plain cursor, or into (or on
// in) the phases that bring the device to the principal's keys. It
// returns the cursor to read from.
func (s *Store) scopeView(ctx context.Context, tx *sql.Tx, p server.Principal, device string, c server.Cursor) (*view, server.Cursor, error) {
	if device == "" {
		return nil, c, fmt.Errorf("with scopes, a pull names its device (%s): %w", wire.HeaderDevice, wire.ErrBadRequest)
	}
	keys, err := s.principalKeys(ctx, tx, p)
	if err != nil {
		return nil, c, err
	}
	v, err := s.deviceView(ctx, tx, p, device)
	if err != nil {
		return nil, c, err
	}
	v.keys = keys
	current := v.pending != nil && keySetID(v.pending) == c.Keys // a cursor of the phases under way
	switch {
	case c.Phase == server.PhaseDone && v.pending == nil && v.held != nil && c.Keys == keySetID(v.held):
		// The answer to this cursor was lost after the server recorded
		// the phases done: the device holds the keys they brought.
		promoted := c.Keys
		c = c.Plain()
		c.Held = promoted
	case c.Phase != server.PhaseNone && !(current && (c.Phase == server.PhaseDone || keySetID(keys) == c.Keys)):
		// The keys changed again (or the phases are an earlier run's,
		// whose answer was lost): the phases start over. The device may
		// hold rows of the keys the earlier pages were bringing it to (set
		// aside, or applied), and may have lost those of the keys they
		// were evicting.
		if v.pending != nil {
			v.unsure = union(v.unsure, minus(v.held, v.pending))
			v.extra, v.pending, v.save = union(v.extra, v.pending), nil, true
		}
		c = c.Plain()
	}
	if c.Version > 0 && v.held != nil && c.Held != keySetID(v.held) {
		// The database is not the one the server gave the cursor to:
		// restored from a backup, or a copy. What it holds is unknown.
		return nil, c, fmt.Errorf("the device holds the rows of other scope keys than the server recorded for it (a database restored from a backup, or copied?): rebuild from a snapshot: %w", wire.ErrHistoryPurged)
	}
	if c.Phase == server.PhaseDone {
		// The device stored the last page of the phases: it holds the
		// keys they brought it to, and no others.
		v.held, v.pending, v.extra, v.unsure, v.save = v.pending, nil, nil, nil, true
		c = c.Plain()
	}
	if c.Phase != server.PhaseNone {
		if c.At.Table >= len(s.tables) {
			return nil, c, fmt.Errorf("a cursor of a scope phase at table %d, past the schema's %d: %w", c.At.Table, len(s.tables), wire.ErrBadRequest)
		}
		return v, c, nil
	}
	switch {
	case v.held == nil && c.Version > 0:
		// The device pulled before scopes were on (or its record is
		// lost): what it holds is unknown.
		return nil, c, fmt.Errorf("the device's scope is unknown (it pulled before scopes were turned on): rebuild from a snapshot: %w", wire.ErrHistoryPurged)
	case slices.Equal(v.held, keys) && len(v.extra) == 0 && len(v.unsure) == 0, v.held == nil:
		// Nothing changed, or nothing held yet from the server.
		if !slices.Equal(v.held, keys) || v.held == nil || v.pending != nil || len(v.extra) > 0 || len(v.unsure) > 0 {
			v.held, v.pending, v.extra, v.unsure, v.save = keys, nil, nil, nil, true
		}
		return v, c, nil
	}
	if !slices.Equal(v.pending, keys) {
		v.pending, v.save = keys, true
	}
	c.Phase, c.Keys, c.At = server.PhaseEvict, keySetID(keys), server.PhaseAt{Table: len(s.tables) - 1}
	return v, c, nil
}

// deviceView reads the keys recorded for device.
func (s *Store) deviceView(ctx context.Context, tx *sql.Tx, p server.Principal, device string) (*view, error) {
	v := &view{}
	var held, pending, extra, unsure sql.NullString
	if err := tx.QueryRowContext(ctx, s.q(`SELECT scope_held, scope_pending, scope_extra, scope_unsure FROM _tether_devices WHERE tenant = ? AND device = ?`),
		p.Tenant, device).Scan(&held, &pending, &extra, &unsure); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("device %s is not registered for this tenant: %w", device, wire.ErrDeviceUnknown)
		}
		return nil, err
	}
	var err error
	if v.held, err = parseKeyList(held); err != nil {
		return nil, err
	}
	if v.pending, err = parseKeyList(pending); err != nil {
		return nil, err
	}
	if v.extra, err = parseKeyList(extra); err != nil {
		return nil, err
	}
	if v.unsure, err = parseKeyList(unsure); err != nil {
		return nil, err
	}
	return v, nil
}

// union returns the sorted union of two sorted key sets.
func union(a, b []string) []string {
	return server.SortKeys(slices.Concat(a, b))
}

// saveView records the device's keys, after the pull's read.
func (s *Store) saveView(ctx context.Context, p server.Principal, device string, v *view) error {
	if v == nil || !v.save {
		return nil
	}
	var extra, unsure any
	if len(v.extra) > 0 {
		extra = keyList(v.extra)
	}
	if len(v.unsure) > 0 {
		unsure = keyList(v.unsure)
	}
	err := s.exec(ctx, `UPDATE _tether_devices SET scope_held = ?, scope_pending = ?, scope_extra = ?, scope_unsure = ? WHERE tenant = ? AND device = ?`,
		keyList(v.held), keyList(v.pending), extra, unsure, p.Tenant, device)
	if err != nil {
		return fmt.Errorf("record the device's scope: %w", err)
	}
	return nil
}

// phasePage reads a page of the phases: Evict rows for the rows of the
// keys the device lost that it may no longer see (children first), then
// every live row of the keys it gained that it does not hold through
// another (parents first), then a cursor in PhaseDone. Rows changed
// after the cursor come with the stream, once (a parent changed after the
// cursor may come a page after its children, as in any pull).
func (s *Store) phasePage(ctx context.Context, tx *sql.Tx, p server.Principal, v *view, c server.Cursor, limit, maxBytes int) ([]wire.Row, server.Cursor, error) {
	sure := minus(v.held, v.unsure)
	lost, gained := minus(union(v.held, v.extra), v.pending), minus(v.pending, sure)
	kept := minus(sure, minus(sure, v.pending))
	var out []wire.Row
	size := 0 // bytes of the rows so far: grants stop at maxBytes, but for the first row
	for c.Phase == server.PhaseEvict && len(out) < limit {
		if c.At.Table < 0 || len(lost) == 0 {
			c.Phase, c.At = server.PhaseGrant, server.PhaseAt{}
			break
		}
		t := s.tables[c.At.Table]
		if s.scope.of(t) == nil {
			c.At = server.PhaseAt{Table: c.At.Table - 1}
			continue
		}
		lostIn, lostArgs := inList("k.scope_key", lost)
		keptIn, keptArgs := inList("k2.scope_key", v.pending)
		want := limit - len(out)
		ids, err := s.strings(ctx, tx, `SELECT DISTINCT k.id FROM _tether_keys k WHERE k.tenant = ? AND k.tbl = ? AND `+lostIn+`
			AND (NOT k.gone OR k.version >= ?) AND k.id > ?
			AND NOT EXISTS (SELECT 1 FROM _tether_keys k2 WHERE k2.tenant = k.tenant AND k2.tbl = k.tbl AND k2.id = k.id AND NOT k2.gone AND `+keptIn+`)
			ORDER BY k.id LIMIT ?`, slices.Concat([]any{p.Tenant, t.schema.Name}, lostArgs, []any{c.Version, c.At.ID}, keptArgs, []any{want})...)
		if err != nil {
			return nil, c, fmt.Errorf("evictions %s: %w", t.schema.Name, err)
		}
		for _, id := range ids {
			out = append(out, wire.Row{Table: t.schema.Name, ID: id, Evict: true})
			c.At.ID = id
		}
		if len(ids) < want {
			c.At = server.PhaseAt{Table: c.At.Table - 1}
		}
	}
	for c.Phase == server.PhaseGrant && len(out) < limit {
		if c.At.Table >= len(s.tables) || len(gained) == 0 {
			c.Phase, c.At = server.PhaseDone, server.PhaseAt{}
			break
		}
		t := s.tables[c.At.Table]
		if s.scope.of(t) == nil {
			c.At = server.PhaseAt{Table: c.At.Table + 1}
			continue
		}
		gainedIn, gainedArgs := inList("k.scope_key", gained)
		keptIn, keptArgs := inList("k2.scope_key", kept)
		want := limit - len(out)
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+t.selects+` FROM `+t.Name+` WHERE "_tenant" = ? AND NOT "_deleted" AND "_version" > 0 AND "id" > ? AND "id" IN (
			SELECT k.id FROM _tether_keys k WHERE k.tenant = ? AND k.tbl = ? AND `+gainedIn+` AND NOT k.gone AND k.version <= ?
			AND NOT EXISTS (SELECT 1 FROM _tether_keys k2 WHERE k2.tenant = k.tenant AND k2.tbl = k.tbl AND k2.id = k.id AND NOT k2.gone AND `+keptIn+`))
			ORDER BY "id" LIMIT ?`),
			slices.Concat([]any{p.Tenant, c.At.ID, p.Tenant, t.schema.Name}, gainedArgs, []any{c.Version}, keptArgs, []any{want})...)
		if err != nil {
			return nil, c, fmt.Errorf("grants %s: %w", t.schema.Name, err)
		}
		n, full := 0, false
		for rows.Next() {
			r, err := scanRow(&t.schema, rows.Scan)
			if err != nil {
				rows.Close()
				return nil, c, err
			}
			sz := r.Size()
			if len(out) > 0 && size+sz > maxBytes {
				full = true // the page holds at least one row, and stops before the bound
				break
			}
			r.Reason, r.Notify = "", ""
			out = append(out, r)
			size += sz
			c.At.ID = r.ID
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, c, err
		}
		if full {
			break
		}
		if n < want {
			c.At = server.PhaseAt{Table: c.At.Table + 1}
		}
	}
	return out, c, nil
}

// readScoped reads into pr the rows of scoped table t after the cursor
// that the view's keys see, in commit order: each row at the latest
// version of its entries in those keys, or, when the row left every one of
// them, an Evict row.
func (s *Store) readScoped(ctx context.Context, tx *sql.Tx, t *Table, tenant string, v *view, pr *pageReader) error {
	in, inArgs := inList("k.scope_key", v.keys)
	var after string
	var afterArgs []any
	switch c := pr.after; {
	case t.idx < c.Table:
		after, afterArgs = `k.version > ?`, []any{c.Version}
	case t.idx == c.Table:
		// The dialect's form, which the database seeks its index with.
		after, afterArgs = s.d.After(c.Version, c.ID)
		after = strings.NewReplacer(`"_version"`, `k.version`, `"id"`, `k.id`).Replace(after)
	default:
		after, afterArgs = `k.version >= ?`, []any{c.Version}
	}
	q := `SELECT ` + qualified(t, "t") + `, t."_session", t."_pushed", m.v, m.vis FROM (
		SELECT k.id AS kid, MAX(k.version) AS v, MAX(CASE WHEN k.gone THEN 0 ELSE 1 END) AS vis FROM _tether_keys k
		WHERE k.tenant = ? AND k.tbl = ? AND ` + in + ` AND ` + after + `
		GROUP BY k.id ORDER BY v, kid LIMIT ?) m
		JOIN ` + t.Name + ` AS t ON t."_tenant" = ? AND t."id" = m.kid AND t."_version" > 0 ORDER BY m.v, m.kid`
	rows, err := tx.QueryContext(ctx, s.q(q), slices.Concat([]any{tenant, t.schema.Name}, inArgs, afterArgs, []any{pr.limit + 1, tenant})...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var session string
		var pushed, at, vis int64
		r, err := scanRow(&t.schema, rows.Scan, &session, &pushed, &at, &vis)
		if err != nil {
			return err
		}
		if vis == 0 {
			r = wire.Row{Table: t.schema.Name, ID: r.ID, Evict: true, Version: at}
		}
		ch := changed{pos: server.Cursor{Version: at, Table: t.idx, ID: r.ID}, row: r, size: r.Size(),
			echo: vis == 1 && pr.own(pushed, r.Device, session)}
		pr.all = append(pr.all, ch)
		if pr.read += ch.size; pr.read > pr.maxBytes {
			if pr.bound == nil || ch.pos.Before(*pr.bound) {
				pr.bound = &ch.pos
			}
			break
		}
	}
	return rows.Err()
}

// scopedSnapshot reads the live rows of scoped table t that keys see,
// after id in byte order, up to limit.
func (s *Store) scopedSnapshot(ctx context.Context, tx *sql.Tx, t *Table, tenant string, keys []string, id string, limit int) (*sql.Rows, error) {
	in, args := inList("k.scope_key", keys)
	return tx.QueryContext(ctx, s.q(`SELECT `+t.selects+` FROM `+t.Name+` WHERE "_tenant" = ? AND NOT "_deleted" AND "_version" > 0 AND `+
		s.d.ByteOrder(`"id"`)+` > ? AND "id" IN (SELECT k.id FROM _tether_keys k WHERE k.tenant = ? AND k.tbl = ? AND NOT k.gone AND `+in+`)
		ORDER BY `+s.d.ByteOrder(`"id"`)+` LIMIT ?`), slices.Concat([]any{tenant, id, tenant, t.schema.Name}, args, []any{limit})...)
}

// Visible implements server.Store.
func (s *Store) Visible(ctx context.Context, p server.Principal, after, upto int64) (bool, error) {
	tx, err := s.r.BeginTx(ctx, s.d.ReadOptions())
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var keys []string
	if s.scope.on() {
		if keys, err = s.principalKeys(ctx, tx, p); err != nil {
			return false, err
		}
	}
	in, args := inList("scope_key", keys)
	q := []string{`SELECT 1 FROM _tether_keys WHERE tenant = ? AND version > ? AND version <= ? AND ` + in}
	qargs := [][]any{slices.Concat([]any{p.Tenant, after, upto}, args)}
	for _, t := range s.tables {
		if s.scope.of(t) == nil {
			q = append(q, `SELECT 1 FROM `+t.Name+` WHERE "_tenant" = ? AND "_version" > ? AND "_version" <= ?`)
			qargs = append(qargs, []any{p.Tenant, after, upto})
		}
	}
	for i := range q {
		var one int
		err := tx.QueryRowContext(ctx, s.q(q[i]+` LIMIT 1`), qargs[i]...).Scan(&one)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return false, err
		}
	}
	return false, nil
}
