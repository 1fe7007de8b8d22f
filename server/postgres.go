package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/wire"
)

var (
	_ Store    = (*PostgresStore)(nil)
	_ Store    = (*SQLiteStore)(nil)
	_ Auditor  = (*PostgresStore)(nil)
	_ Auditor  = (*SQLiteStore)(nil)
	_ Notifier = (*PostgresStore)(nil)
	_ Notifier = (*SQLiteStore)(nil)
	_ Digester = (*PostgresStore)(nil)
	_ Digester = (*SQLiteStore)(nil)
)

// PostgresStore is the production Store: one PostgreSQL database shared by
// any number of server processes. No process keeps state another needs:
// sessions, staged batches and versions all live in the database.
//
// Commits of one tenant are serialized by a transaction-scoped advisory
// lock taken before the session's version is drawn from a sequence, so a
// tenant's versions become visible in commit order and a pull never skips
// a change that commits later (G1). Every table's primary key and indexes
// lead with the tenant, so the store can be distributed by tenant.
type PostgresStore struct {
	pool   *pgxpool.Pool
	schema entity.Schema
	tables []*pgTable // in priority order
	byName map[string]*pgTable

	events      *broadcaster
	listenOnce  sync.Once
	listenReady chan struct{} // closed once LISTEN first succeeds
	stop        context.CancelFunc
	stopped     chan struct{}
}

// notifyChannel is the PostgreSQL channel of commit notifications.
const notifyChannel = "tether_changes"

// notice is the payload of a commit notification.
type notice struct {
	Tenant  string `json:"tenant"`
	Version int64  `json:"version"`
	Device  string `json:"device"`
}

// pgTable holds the SQL of one synced table.
type pgTable struct {
	idx      int
	t        entity.Table
	name     string // quoted
	stage    string // quoted name of the staging table
	cols     []string
	selects  string // id, value columns, then rowCols
	latest   string // the latest staged version of each row of a session
	merge    string
	conflict string
}

// OpenPostgres connects to the PostgreSQL database at url (a postgres://
// URL or a key=value connection string) and creates or upgrades the tables
// of schema. It adds missing tables and columns and never drops any.
func OpenPostgres(ctx context.Context, url string, schema entity.Schema) (*PostgresStore, error) {
	if err := schema.Validate(); err != nil {
		return nil, fmt.Errorf("server: open postgres: %w", err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("server: open postgres: %w", err)
	}
	s := &PostgresStore{pool: pool, schema: schema, byName: map[string]*pgTable{},
		events: newBroadcaster(), listenReady: make(chan struct{}), stopped: make(chan struct{})}
	for i, t := range schema.Tables {
		pt := newPGTable(i, t)
		s.tables = append(s.tables, pt)
		s.byName[t.Name] = pt
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("server: open postgres: %w", err)
	}
	return s, nil
}

func pgType(k entity.Kind) string {
	switch k {
	case entity.KindInteger:
		return "bigint"
	case entity.KindReal:
		return "double precision"
	case entity.KindBool:
		return "boolean"
	case entity.KindBlob:
		return "bytea"
	}
	// Times stay in entity.TimeFormat text: timestamptz keeps only
	// microseconds, and rows must round-trip exactly.
	return "text"
}

func pgIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

func newPGTable(idx int, t entity.Table) *pgTable {
	pt := &pgTable{idx: idx, t: t, name: pgIdent(t.Name), stage: pgIdent("_tether_stage_" + t.Name)}
	var sets []string
	for i, c := range t.Columns {
		pt.cols = append(pt.cols, pgIdent(c.Name))
		if i > 0 {
			sets = append(sets, fmt.Sprintf("%s = excluded.%s", pgIdent(c.Name), pgIdent(c.Name)))
		}
	}
	book := []string{"_version", "_deleted", "_hlc", "_modified_by", "_origin", "_session"}
	for _, b := range book {
		sets = append(sets, fmt.Sprintf("%s = excluded.%s", b, b))
	}
	cols := strings.Join(pt.cols, ", ")
	pt.selects = cols + ", " + rowCols
	// A row re-sent in a later batch of the session replaces the earlier.
	pt.latest = fmt.Sprintf(`SELECT DISTINCT ON (id) * FROM %s WHERE _tenant = $1 AND _session = $2 ORDER BY id, _seq DESC`, pt.stage)
	pt.conflict = fmt.Sprintf(`SELECT s.id FROM (%s) AS s JOIN %s AS t ON t._tenant = $1 AND t.id = s.id
		WHERE t._version <> s._base AND t._session <> s._session ORDER BY s.id`, pt.latest, pt.name)
	// _colvers records, per column, the version that last changed it (for
	// MergeColumns).
	pt.merge = fmt.Sprintf(`INSERT INTO %s (_tenant, %s, %s, _colvers)
		SELECT $1, %s, $3, _deleted, _hlc, $4, $5, _session,
			(SELECT coalesce(jsonb_object_agg(c, $3::bigint), '{}'::jsonb) FROM jsonb_array_elements_text(s._changed::jsonb) AS c)
		FROM (%s) AS s
		ON CONFLICT (_tenant, id) DO UPDATE SET %s, _colvers = %s._colvers || excluded._colvers`,
		pt.name, cols, strings.Join(book, ", "), cols, pt.latest, strings.Join(sets, ", "), pt.name)
	return pt
}

const pgDDL = `
CREATE SEQUENCE IF NOT EXISTS _tether_version;
CREATE TABLE IF NOT EXISTS _tether_devices (
	device text PRIMARY KEY, tenant text NOT NULL, user_name text NOT NULL,
	created_at timestamptz NOT NULL, seen_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS _tether_sessions (
	tenant text NOT NULL, id text NOT NULL, device text NOT NULL, user_name text NOT NULL,
	created_at timestamptz NOT NULL, committed_at timestamptz, version bigint, result text,
	PRIMARY KEY (tenant, id));
ALTER TABLE _tether_sessions ADD COLUMN IF NOT EXISTS touched_at timestamptz;
CREATE INDEX IF NOT EXISTS _tether_sessions__open ON _tether_sessions (tenant, device) WHERE committed_at IS NULL;
CREATE TABLE IF NOT EXISTS _tether_audit (
	tenant text NOT NULL, version bigint NOT NULL, tbl text NOT NULL, id text NOT NULL, deleted boolean NOT NULL,
	user_name text NOT NULL, device text NOT NULL, session text NOT NULL, at timestamptz NOT NULL,
	PRIMARY KEY (tenant, version, tbl, id));
CREATE TABLE IF NOT EXISTS _tether_batches (
	tenant text NOT NULL, session text NOT NULL, seq integer NOT NULL, tbl text NOT NULL, rows integer NOT NULL,
	PRIMARY KEY (tenant, session, seq));
`

func (s *PostgresStore) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Several processes may start at once on an empty database.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7354)`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, pgDDL); err != nil {
			return fmt.Errorf("create bookkeeping tables: %w", err)
		}
		for _, pt := range s.tables {
			if err := pt.migrate(ctx, tx); err != nil {
				return fmt.Errorf("table %s: %w", pt.t.Name, err)
			}
		}
		return nil
	})
}

func (pt *pgTable) migrate(ctx context.Context, tx pgx.Tx) error {
	var defs []string
	for _, c := range pt.t.Columns {
		def := pgIdent(c.Name) + " " + pgType(c.Kind)
		if c.Name == "id" {
			def += " NOT NULL"
		}
		defs = append(defs, def)
	}
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	_tenant text NOT NULL,
	%s,
	_version bigint NOT NULL,
	_deleted boolean NOT NULL DEFAULT false,
	_hlc text NOT NULL,
	_modified_by text NOT NULL,
	_origin text NOT NULL,
	_session text NOT NULL,
	PRIMARY KEY (_tenant, id));
CREATE INDEX IF NOT EXISTS %s ON %s (_tenant, _version, id);
CREATE TABLE IF NOT EXISTS %s (
	_tenant text NOT NULL,
	_session text NOT NULL,
	_seq integer NOT NULL,
	_base bigint NOT NULL,
	_deleted boolean NOT NULL,
	_hlc text NOT NULL,
	%s);
CREATE INDEX IF NOT EXISTS %s ON %s (_tenant, _session, id, _seq)`,
		pt.name, strings.Join(defs, ",\n\t"),
		pgIdent(pt.t.Name+"__changes"), pt.name,
		pt.stage, strings.Join(defs, ",\n\t"),
		pgIdent("_tether_stage_"+pt.t.Name+"__session"), pt.stage)
	if _, err := tx.Exec(ctx, ddl); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	for _, q := range []string{
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS _colvers jsonb NOT NULL DEFAULT '{}'`, pt.name),
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS _changed text NOT NULL DEFAULT '[]'`, pt.stage),
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("add bookkeeping column: %w", err)
		}
	}
	for _, table := range []string{pt.t.Name, "_tether_stage_" + pt.t.Name} {
		for _, c := range pt.t.Columns {
			q := fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s`, pgIdent(table), pgIdent(c.Name), pgType(c.Kind))
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("add column %s to %s: %w", c.Name, table, err)
			}
		}
	}
	return nil
}

// Schema implements Store.
func (s *PostgresStore) Schema() entity.Schema { return s.schema }

// Close implements Store.
func (s *PostgresStore) Close() error {
	s.listenOnce.Do(func() {}) // no listener starts after this
	if s.stop != nil {
		s.stop()
		<-s.stopped
	}
	s.pool.Close()
	return nil
}

// Subscribe implements Notifier. Commits made by any server process on the
// database are seen, through LISTEN/NOTIFY on one connection per store.
func (s *PostgresStore) Subscribe(ctx context.Context, tenant string) (<-chan wire.Event, error) {
	s.listenOnce.Do(func() {
		lctx, stop := context.WithCancel(context.Background())
		s.stop = stop
		go s.listen(lctx)
	})
	ch := s.events.subscribe(ctx, tenant)
	select { // so that no commit after Subscribe returns is missed
	case <-s.listenReady:
		return ch, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("listen for changes: no connection: %w", wire.ErrUnavailable)
	}
}

// listen relays notifications to the subscribers until ctx ends,
// reconnecting with backoff. After a reconnection every subscriber gets an
// event, since notifications may have been missed meanwhile.
func (s *PostgresStore) listen(ctx context.Context) {
	defer close(s.stopped)
	wait := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		err := s.listenConn(ctx, func() {
			if first {
				close(s.listenReady)
				first = false
			} else {
				s.events.publishAll(wire.Event{})
			}
			wait = 100 * time.Millisecond
		})
		if ctx.Err() != nil {
			return
		}
		_ = err // the connection dropped: try again
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// listenConn holds one connection in LISTEN until it fails.
func (s *PostgresStore) listenConn(ctx context.Context, ready func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	ready()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			conn.Conn().Close(context.Background()) // never return a listening connection to the pool
			return err
		}
		var msg notice
		if json.Unmarshal([]byte(n.Payload), &msg) == nil {
			s.events.publish(msg.Tenant, wire.Event{Version: msg.Version, Device: msg.Device})
		}
	}
}

// Pool returns the connection pool, for the plain SQL queries of a back
// office. Synced tables carry the entity columns plus _tenant, _version,
// _deleted, _hlc, _modified_by, _origin and _session.
func (s *PostgresStore) Pool() *pgxpool.Pool { return s.pool }

// RegisterDevice implements Store.
func (s *PostgresStore) RegisterDevice(ctx context.Context, p Principal, device string) error {
	// A device of another tenant is left untouched, seen_at included.
	tag, err := s.pool.Exec(ctx, `INSERT INTO _tether_devices (device, tenant, user_name, created_at, seen_at)
		VALUES ($1, $2, $3, now(), now())
		ON CONFLICT (device) DO UPDATE SET seen_at = excluded.seen_at WHERE _tether_devices.tenant = excluded.tenant`,
		device, p.Tenant, p.User)
	if err != nil {
		return fmt.Errorf("register device %s: %w", device, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("device %s is registered to another tenant: %w", device, wire.ErrForbidden)
	}
	return nil
}

// OpenSession implements Store.
func (s *PostgresStore) OpenSession(ctx context.Context, p Principal, device, session string, lim Limits) (string, error) {
	lim = lim.withDefaults()
	id := session
	if id == "" {
		id = uuid.NewString()
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var tenant string
		err := tx.QueryRow(ctx, `SELECT tenant FROM _tether_devices WHERE device = $1`, device).Scan(&tenant)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && tenant != p.Tenant) {
			return fmt.Errorf("device %s is not registered for this tenant: %w", device, wire.ErrForbidden)
		}
		if err != nil {
			return err
		}
		if session != "" { // sessions are keyed by tenant and id
			var dev string
			var committed *time.Time
			err := tx.QueryRow(ctx, `SELECT device, committed_at FROM _tether_sessions WHERE tenant = $1 AND id = $2`,
				p.Tenant, session).Scan(&dev, &committed)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return err
			case dev == device && committed == nil:
				return nil // opened before; the answer was lost
			default:
				return fmt.Errorf("session id %s is already in use: %w", session, wire.ErrConflict)
			}
		}
		rows, err := tx.Query(ctx, `SELECT id FROM _tether_sessions WHERE tenant = $1 AND device = $2 AND committed_at IS NULL
			AND coalesce(touched_at, created_at) < $3 FOR UPDATE`, p.Tenant, device, time.Now().Add(-lim.SessionIdle))
		if err != nil {
			return err
		}
		idle, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, old := range idle {
			if err := s.dropSession(ctx, tx, p.Tenant, old); err != nil {
				return err
			}
		}
		var open int
		err = tx.QueryRow(ctx, `SELECT count(*) FROM _tether_sessions WHERE tenant = $1 AND device = $2 AND committed_at IS NULL`,
			p.Tenant, device).Scan(&open)
		if err != nil {
			return err
		}
		if open >= lim.MaxOpenSessions {
			return tooManySessions(device, lim)
		}
		_, err = tx.Exec(ctx, `INSERT INTO _tether_sessions (tenant, id, device, user_name, created_at, touched_at)
			VALUES ($1, $2, $3, $4, now(), now())`, p.Tenant, id, device, p.User)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	return id, nil
}

// dropSession deletes an uncommitted session and everything it staged.
func (s *PostgresStore) dropSession(ctx context.Context, tx pgx.Tx, tenant, id string) error {
	for _, pt := range s.tables {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE _tenant = $1 AND _session = $2`, pt.stage), tenant, id); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM _tether_batches WHERE tenant = $1 AND session = $2`, tenant, id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM _tether_sessions WHERE tenant = $1 AND id = $2 AND committed_at IS NULL`, tenant, id)
	return err
}

// liveSession loads a session for a write, in tx. An expired one is
// dropped, in a transaction of its own, and reported as not found.
func (s *PostgresStore) liveSession(ctx context.Context, tx pgx.Tx, p Principal, device, id string, lim Limits) (committed bool, result string, err error) {
	committed, result, touched, err := pgSession(ctx, tx, p, device, id)
	if err != nil || committed {
		return committed, result, err
	}
	if touched.Before(time.Now().Add(-lim.SessionIdle)) {
		tx.Rollback(ctx)
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return s.dropSession(ctx, tx, p.Tenant, id) })
		if err != nil {
			return false, "", fmt.Errorf("expire session %s: %w", id, err)
		}
		return false, "", expiredError(id, lim.SessionIdle)
	}
	return false, "", nil
}

// pgSession loads a session of the principal's device, locking it for the
// rest of tx. A session of another tenant or device is not found.
func pgSession(ctx context.Context, tx pgx.Tx, p Principal, device, id string) (committed bool, result string, touched time.Time, err error) {
	var dev string
	var res *string
	err = tx.QueryRow(ctx, `SELECT device, result, coalesce(touched_at, created_at) FROM _tether_sessions
		WHERE tenant = $1 AND id = $2 FOR UPDATE`, p.Tenant, id).Scan(&dev, &res, &touched)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && dev != device) {
		return false, "", time.Time{}, fmt.Errorf("unknown session %q: %w", id, wire.ErrNotFound)
	}
	if err != nil {
		return false, "", time.Time{}, fmt.Errorf("session %s: %w", id, err)
	}
	if res == nil {
		return false, "", touched, nil
	}
	return true, *res, touched, nil
}

// StageBatch implements Store. Rows are written with COPY.
func (s *PostgresStore) StageBatch(ctx context.Context, p Principal, device, session string, seq int, rows []wire.Row, lim Limits) error {
	lim = lim.withDefaults()
	pt := s.byName[rows[0].Table]
	if pt == nil {
		return fmt.Errorf("stage batch %d: unknown table %q: %w", seq, rows[0].Table, wire.ErrBadRequest)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		committed, _, err := s.liveSession(ctx, tx, p, device, session, lim)
		if err != nil {
			return err
		}
		if committed {
			return fmt.Errorf("session %s is already committed: %w", session, wire.ErrConflict)
		}
		if _, err := tx.Exec(ctx, `UPDATE _tether_sessions SET touched_at = now() WHERE tenant = $1 AND id = $2`, p.Tenant, session); err != nil {
			return fmt.Errorf("stage batch %d: %w", seq, err)
		}
		// A re-sent batch replaces the first one (G3).
		var old string
		err = tx.QueryRow(ctx, `DELETE FROM _tether_batches WHERE tenant = $1 AND session = $2 AND seq = $3 RETURNING tbl`,
			p.Tenant, session, seq).Scan(&old)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return fmt.Errorf("stage batch %d: %w", seq, err)
		case s.byName[old] != nil:
			_, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE _tenant = $1 AND _session = $2 AND _seq = $3`, s.byName[old].stage),
				p.Tenant, session, seq)
			if err != nil {
				return fmt.Errorf("stage batch %d: replace: %w", seq, err)
			}
		}
		cols := []string{"_tenant", "_session", "_seq", "_base", "_deleted", "_hlc", "_changed"}
		for _, c := range pt.t.Columns {
			cols = append(cols, c.Name)
		}
		i := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(rows) {
				return nil, nil
			}
			r := rows[i]
			i++
			vals := make([]any, 0, len(cols))
			vals = append(vals, p.Tenant, session, seq, r.Base, r.Deleted, r.HLC, changedJSON(&pt.t, r), r.ID)
			for _, c := range pt.t.Columns[1:] {
				vals = append(vals, r.Values[c.Name])
			}
			return vals, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"_tether_stage_" + pt.t.Name}, cols, src); err != nil {
			return fmt.Errorf("stage batch %d: %w", seq, err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO _tether_batches (tenant, session, seq, tbl, rows) VALUES ($1, $2, $3, $4, $5)`,
			p.Tenant, session, seq, pt.t.Name, len(rows))
		if err != nil {
			return fmt.Errorf("stage batch %d: %w", seq, err)
		}
		return nil
	})
}

// tenantLock is the advisory lock key that serializes a tenant's commits.
func tenantLock(tenant string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tether-commit:" + tenant))
	return int64(h.Sum64())
}

// Commit implements Store.
func (s *PostgresStore) Commit(ctx context.Context, p Principal, device, session string, resolve Resolver, lim Limits) (wire.Commit, error) {
	lim = lim.withDefaults()
	var c wire.Commit
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		c = wire.Commit{}
		committed, result, err := s.liveSession(ctx, tx, p, device, session, lim)
		if err != nil {
			return err
		}
		if committed { // a re-sent commit gets the first answer (G3)
			if err := json.Unmarshal([]byte(result), &c); err != nil {
				return fmt.Errorf("stored result: %w", err)
			}
			return nil
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, tenantLock(p.Tenant)); err != nil {
			return fmt.Errorf("lock tenant: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT nextval('_tether_version')`).Scan(&c.Version); err != nil {
			return fmt.Errorf("next version: %w", err)
		}
		for _, pt := range s.tables { // parents before children (G4)
			if err := s.applyTable(ctx, tx, pt, p, device, session, resolve, &c); err != nil {
				return fmt.Errorf("%s: %w", pt.t.Name, err)
			}
		}
		res, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE _tether_sessions SET committed_at = now(), version = $1, result = $2 WHERE tenant = $3 AND id = $4`,
			c.Version, string(res), p.Tenant, session); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM _tether_batches WHERE tenant = $1 AND session = $2`, p.Tenant, session); err != nil {
			return err
		}
		// Delivered to every listening process when the commit is.
		payload, _ := json.Marshal(notice{Tenant: p.Tenant, Version: c.Version, Device: device})
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(payload))
		return err
	})
	if err != nil {
		return wire.Commit{}, fmt.Errorf("commit session %s: %w", session, err)
	}
	return c, nil
}

func (s *PostgresStore) applyTable(ctx context.Context, tx pgx.Tx, pt *pgTable, p Principal, device, session string, resolve Resolver, c *wire.Commit) error {
	rows, err := tx.Query(ctx, pt.conflict, p.Tenant, session)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.resolveRow(ctx, tx, pt, p, device, session, id, resolve, c); err != nil {
			return fmt.Errorf("%q: %w", id, err)
		}
	}
	tag, err := tx.Exec(ctx, pt.merge, p.Tenant, session, c.Version, p.User, device)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	c.Applied += int(tag.RowsAffected())
	_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO _tether_audit (tenant, version, tbl, id, deleted, user_name, device, session, at)
		SELECT $1, $3, $4, id, _deleted, $5, $6, _session, now() FROM (%s) AS s`, pt.latest),
		p.Tenant, session, c.Version, pt.t.Name, p.User, device)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	_, err = tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE _tenant = $1 AND _session = $2`, pt.stage), p.Tenant, session)
	return err
}

func (s *PostgresStore) resolveRow(ctx context.Context, tx pgx.Tx, pt *pgTable, p Principal, device, session, id string, resolve Resolver, c *wire.Commit) error {
	var colvers string
	cur, err := scanRow(&pt.t, tx.QueryRow(ctx, fmt.Sprintf(`SELECT %s, _colvers::text FROM %s WHERE _tenant = $1 AND id = $2`,
		pt.selects, pt.name), p.Tenant, id).Scan, &colvers)
	if err != nil {
		return err
	}
	staged, err := scanStaged(&pt.t, tx.QueryRow(ctx, fmt.Sprintf(`SELECT %s, _base, _deleted, _hlc, _changed FROM (%s) AS s WHERE id = $3`,
		strings.Join(pt.cols, ", "), pt.latest), p.Tenant, session, id).Scan)
	if err != nil {
		return err
	}
	cf, merged, err := decide(ctx, resolve, &pt.t, cur, staged, colvers, c.Version, device, p.User)
	if err != nil {
		return err
	}
	c.Conflicts = append(c.Conflicts, cf)
	switch {
	case cf.Winner == wire.WinnerServer:
		_, err = tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE _tenant = $1 AND _session = $2 AND id = $3`, pt.stage), p.Tenant, session, id)
	case merged != nil:
		args := []any{p.Tenant, session, id, merged.Deleted, merged.HLC, changedJSON(&pt.t, *merged)}
		sets := []string{`_deleted = $4`, `_hlc = $5`, `_changed = $6`}
		for _, col := range pt.t.Columns[1:] {
			args = append(args, merged.Values[col.Name])
			sets = append(sets, fmt.Sprintf("%s = $%d", pgIdent(col.Name), len(args)))
		}
		// Every staged copy of the row: the merge applies the latest.
		_, err = tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET %s WHERE _tenant = $1 AND _session = $2 AND id = $3`, pt.stage, strings.Join(sets, ", ")), args...)
	}
	return err
}

// Changes implements Store. It reads every table in one repeatable-read
// transaction, so a page is a consistent snapshot, and merges them in
// commit order.
func (s *PostgresStore) Changes(ctx context.Context, p Principal, after Cursor, limit int) ([]wire.Row, Cursor, bool, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, after, false, fmt.Errorf("changes: %w", err)
	}
	defer tx.Rollback(ctx)
	var all []changed
	for _, pt := range s.tables {
		var where string
		args := []any{p.Tenant, after.Version}
		switch {
		case pt.idx < after.Table:
			where = `_version > $2`
		case pt.idx == after.Table:
			where = `(_version, id) > ($2, $3)`
			args = append(args, after.ID)
		default:
			where = `_version >= $2`
		}
		args = append(args, limit+1)
		q := fmt.Sprintf(`SELECT %s FROM %s WHERE _tenant = $1 AND %s ORDER BY _version, id LIMIT $%d`,
			pt.selects, pt.name, where, len(args))
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return nil, after, false, fmt.Errorf("changes %s: %w", pt.t.Name, err)
		}
		for rows.Next() {
			r, err := scanRow(&pt.t, rows.Scan)
			if err != nil {
				rows.Close()
				return nil, after, false, fmt.Errorf("changes %s: %w", pt.t.Name, err)
			}
			all = append(all, changed{Cursor{Version: r.Version, Table: pt.idx, ID: r.ID}, r})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, after, false, fmt.Errorf("changes %s: %w", pt.t.Name, err)
		}
	}
	out, next, more := page(all, after, limit)
	return out, next, more, nil
}

// changed is a row read for a pull page, with its position.
type changed struct {
	pos Cursor
	row wire.Row
}

// page orders the rows read from every table by commit order and keeps the
// first limit of them.
func page(all []changed, after Cursor, limit int) ([]wire.Row, Cursor, bool) {
	sort.Slice(all, func(i, j int) bool { return all[i].pos.less(all[j].pos) })
	more := len(all) > limit
	if more {
		all = all[:limit]
	}
	out := make([]wire.Row, len(all))
	for i, it := range all {
		out[i] = it.row
	}
	if len(all) > 0 {
		after = all[len(all)-1].pos
	}
	return out, after, more
}

// Audit implements Auditor. The log is the _tether_audit table.
func (s *PostgresStore) Audit(ctx context.Context, tenant string, after int64, limit int) ([]AuditEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT version, tbl, id, deleted, user_name, device, session, at FROM _tether_audit
		WHERE tenant = $1 AND version > $2 ORDER BY version, tbl, id LIMIT $3`, tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		err := r.Scan(&e.Version, &e.Table, &e.ID, &e.Deleted, &e.User, &e.Device, &e.Session, &e.At)
		e.At = e.At.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}

// Digest implements Digester. Rows are read in byte order of their ids
// (COLLATE "C"), whatever the database's collation.
func (s *PostgresStore) Digest(ctx context.Context, p Principal, table string) (wire.TableDigest, error) {
	pt := s.byName[table]
	if pt == nil {
		return wire.TableDigest{}, fmt.Errorf("digest: unknown table %q: %w", table, wire.ErrBadRequest)
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT _deleted, %s FROM %s WHERE _tenant = $1 ORDER BY id COLLATE "C"`,
		strings.Join(pt.cols, ", "), pt.name), p.Tenant)
	if err != nil {
		return wire.TableDigest{}, fmt.Errorf("digest %s: %w", table, err)
	}
	defer rows.Close()
	d, err := entity.DigestRows(&pt.t, rows.Next, rows.Scan)
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return wire.TableDigest{}, fmt.Errorf("digest %s: %w", table, err)
	}
	return wire.TableDigest{Table: table, Rows: d.Rows(), SHA256: d.Sum()}, nil
}
