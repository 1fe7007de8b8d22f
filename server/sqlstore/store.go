package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

var _ server.Store = (*Store)(nil)

// Store is a server.Store over a SQL database: the session and commit flow,
// written once, over a Dialect. It is safe for concurrent use.
type Store struct {
	w, r    *sql.DB // writes and reads; the same pool but for SQLite
	d       Dialect
	schema  entity.Schema
	tables  []*Table // in priority order
	byName  map[string]*Table
	now     func() time.Time
	rebound sync.Map // query -> query in the dialect's placeholders
	merges  sync.Map // table index -> merge statement
	refs    []ref    // the schema's references
	onClose func() error

	events      *broadcaster
	listenOnce  sync.Once
	listenReady chan struct{} // closed once the dialect first listens
	stop        context.CancelFunc
	stopped     chan struct{}
}

// Options configure New.
type Options struct {
	// Read is the pool of read transactions; default the writer's.
	Read *sql.DB
	// OnClose runs when the store closes, after both pools are closed.
	OnClose func() error
	// Now is the clock of the time-based rules; default time.Now.
	Now func() time.Time
}

// New returns a store over db with dialect d, after creating or upgrading
// the tables of schema. The store owns db (and opts.Read): Close closes
// them.
func New(ctx context.Context, db *sql.DB, d Dialect, schema entity.Schema, opts Options) (*Store, error) {
	if err := schema.Validate(); err != nil {
		return nil, err
	}
	s := &Store{w: db, r: opts.Read, d: d, schema: schema, byName: map[string]*Table{}, now: time.Now,
		onClose: opts.OnClose, events: newBroadcaster(), listenReady: make(chan struct{}), stopped: make(chan struct{})}
	if s.r == nil {
		s.r = db
	}
	if opts.Now != nil {
		s.now = opts.Now
	}
	for i, t := range schema.Tables {
		tb := newTable(i, t)
		s.tables = append(s.tables, tb)
		s.byName[t.Name] = tb
	}
	s.refs = refs(s.tables, s.byName)
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error { return d.Migrate(ctx, tx, s.tables) })
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return s, nil
}

// Schema implements server.Store.
func (s *Store) Schema() entity.Schema { return s.schema }

// DB returns the pool of read transactions, for the plain SQL queries of a
// back office. Synced tables carry the entity columns plus _tenant,
// _version, _deleted, _hlc, _modified_by, _origin and _session.
func (s *Store) DB() *sql.DB { return s.r }

// Close implements server.Store.
func (s *Store) Close() error {
	s.listenOnce.Do(func() {}) // no listener starts after this
	if s.stop != nil {
		s.stop()
		<-s.stopped
	}
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	if s.onClose != nil {
		err = errors.Join(err, s.onClose())
	}
	return err
}

// q returns query in the dialect's placeholders.
func (s *Store) q(query string) string {
	if v, ok := s.rebound.Load(query); ok {
		return v.(string)
	}
	r := s.d.Rebind(query)
	s.rebound.Store(query, r)
	return r
}

// inTx runs f in a write transaction on a connection of its own and
// commits it when f returns nil. A transaction the database aborted (a
// deadlock) runs again, up to three times.
func (s *Store) inTx(ctx context.Context, f func(conn *sql.Conn, tx *sql.Tx) error) error {
	var err error
	for range 3 {
		if err = s.tx(ctx, f); err == nil || !s.d.Retryable(err) {
			return err
		}
	}
	return err
}

func (s *Store) tx(ctx context.Context, f func(conn *sql.Conn, tx *sql.Tx) error) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, s.d.WriteOptions())
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(conn, tx); err != nil {
		var then *commitThen
		if errors.As(err, &then) {
			if cerr := tx.Commit(); cerr != nil {
				return cerr
			}
			return then.err
		}
		return err
	}
	return tx.Commit()
}

// commitThen is an error after which inTx still commits what was written,
// then returns err: an expired session is dropped, and reported.
type commitThen struct{ err error }

func (c *commitThen) Error() string { return c.err.Error() }
func (c *commitThen) Unwrap() error { return c.err }

// timeOf converts a stored server time, as the driver scanned it.
func timeOf(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x.UTC(), nil
	case string:
		return entity.ParseTime(x)
	case []byte:
		return entity.ParseTime(string(x))
	}
	return time.Time{}, fmt.Errorf("unexpected time %T", v)
}

// RegisterDevice implements server.Store.
func (s *Store) RegisterDevice(ctx context.Context, p server.Principal, device string, schema *entity.Schema) error {
	own := ""
	if schema != nil {
		b, err := json.Marshal(schema)
		if err != nil {
			return fmt.Errorf("register device %s: %w", device, err)
		}
		own = string(b)
	}
	register := func() error {
		return s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
			// Devices are keyed by tenant: the same id in another tenant is
			// another device, and nothing here tells whether one exists.
			var known string
			err := tx.QueryRowContext(ctx, s.q(`SELECT device FROM _tether_devices WHERE tenant = ? AND device = ?`+s.d.ForUpdate()),
				p.Tenant, device).Scan(&known)
			now := s.d.Time(s.now())
			switch {
			case errors.Is(err, sql.ErrNoRows):
				_, err = tx.ExecContext(ctx, s.q(`INSERT INTO _tether_devices (tenant, device, user_name, created_at, seen_at, app_schema) VALUES (?, ?, ?, ?, ?, ?)`),
					p.Tenant, device, p.User, now, now, own)
				return err
			case err != nil:
				return err
			}
			_, err = tx.ExecContext(ctx, s.q(`UPDATE _tether_devices SET seen_at = ?, app_schema = ? WHERE tenant = ? AND device = ?`), now, own, p.Tenant, device)
			return err
		})
	}
	err := register()
	if err != nil {
		err = register() // a concurrent first registration of the same device
	}
	if err != nil {
		return fmt.Errorf("register device %s: %w", device, err)
	}
	return nil
}

// OpenSession implements server.Store.
func (s *Store) OpenSession(ctx context.Context, p server.Principal, device, session string, lim server.Limits) (string, error) {
	lim = lim.WithDefaults()
	id := session
	if id == "" {
		id = uuid.NewString()
	}
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		return s.openTx(ctx, tx, p, device, id, session != "", lim)
	})
	if err != nil && !errors.Is(err, errOpened) {
		return "", fmt.Errorf("open session: %w", err)
	}
	return id, nil
}

// openTx opens session id of the device in tx; named reports that the
// device chose the id, which may then be open already (errOpened).
func (s *Store) openTx(ctx context.Context, tx *sql.Tx, p server.Principal, device, id string, named bool, lim server.Limits) error {
	// The session writes the columns of the app version the device has
	// now, whatever it registers later.
	var schema string
	err := tx.QueryRowContext(ctx, s.q(`SELECT app_schema FROM _tether_devices WHERE tenant = ? AND device = ?`), p.Tenant, device).Scan(&schema)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("device %s is not registered for this tenant: %w", device, wire.ErrDeviceUnknown)
	}
	if err != nil {
		return err
	}
	if named {
		var dev, user string
		var committed any
		err := tx.QueryRowContext(ctx, s.q(`SELECT device, user_name, committed_at FROM _tether_sessions WHERE tenant = ? AND id = ?`+s.d.ForUpdate()),
			p.Tenant, id).Scan(&dev, &user, &committed)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case dev == device && user == p.User && committed == nil:
			return errOpened // opened before; the answer was lost
		case dev == device && user == p.User:
			return errCommitted
		default:
			return fmt.Errorf("session id %s is already in use: %w", id, wire.ErrConflict)
		}
	}
	idle, err := s.strings(ctx, tx, `SELECT id FROM _tether_sessions WHERE tenant = ? AND device = ? AND user_name = ? AND committed_at IS NULL
		AND coalesce(touched_at, created_at) < ?`+s.d.ForUpdate(), p.Tenant, device, p.User, s.d.Time(s.now().Add(-lim.SessionIdle)))
	if err != nil {
		return err
	}
	for _, old := range idle {
		if err := s.dropSession(ctx, tx, p.Tenant, old); err != nil {
			return err
		}
	}
	var open int
	err = tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM _tether_sessions WHERE tenant = ? AND device = ? AND user_name = ? AND committed_at IS NULL`),
		p.Tenant, device, p.User).Scan(&open)
	if err != nil {
		return err
	}
	if open >= lim.MaxOpenSessions { // per user: no one fills another's quota
		return fmt.Errorf("user %s has %d open sessions on device %s, the limit: commit one, or wait %v for an idle one to expire: %w",
			p.User, lim.MaxOpenSessions, device, lim.SessionIdle, wire.ErrConflict)
	}
	now := s.d.Time(s.now())
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO _tether_sessions (tenant, id, device, user_name, created_at, touched_at, cols)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), p.Tenant, id, device, p.User, now, now, schema)
	return err
}

// errOpened ends the transaction of an OpenSession that finds the session
// already open, with nothing to write.
var errOpened = errors.New("session already open")

// errStaleAttempt is a batch older than the copy staged (see stageTx).
var errStaleAttempt = fmt.Errorf("a later attempt staged it: %w", wire.ErrConflict)

// errCommitted is an OpenSession of a session the same device and user
// committed already: a retry of the request that committed it, for Push.
var errCommitted = fmt.Errorf("session already committed: %w", wire.ErrConflict)

// strings runs a query of one text column in tx.
func (s *Store) strings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	return Strings(ctx, tx, s.q(query), args...)
}

// Strings runs query, in the database's own placeholders, in tx and
// returns its one text column.
func Strings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Set returns the strings as a set.
func Set(list []string, err error) (map[string]bool, error) {
	set := make(map[string]bool, len(list))
	for _, v := range list {
		set[v] = true
	}
	return set, err
}

// dropFrom deletes the batches of an uncommitted session from batch seq on,
// and the rows they staged.
func (s *Store) dropFrom(ctx context.Context, tx *sql.Tx, tenant, session string, seq int) error {
	tables, err := s.strings(ctx, tx, `SELECT DISTINCT tbl FROM _tether_batches WHERE tenant = ? AND session = ? AND seq >= ?`, tenant, session, seq)
	if err != nil {
		return fmt.Errorf("drop stale batches: %w", err)
	}
	for _, name := range tables {
		if t := s.byName[name]; t != nil {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ? AND "_seq" >= ?`), tenant, session, seq); err != nil {
				return fmt.Errorf("drop stale batches: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_batches WHERE tenant = ? AND session = ? AND seq >= ?`), tenant, session, seq); err != nil {
		return fmt.Errorf("drop stale batches: %w", err)
	}
	return nil
}

// dropSession deletes an uncommitted session and everything it staged.
func (s *Store) dropSession(ctx context.Context, tx *sql.Tx, tenant, id string) error {
	for _, t := range s.tables {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ?`), tenant, id); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_batches WHERE tenant = ? AND session = ?`), tenant, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_sessions WHERE tenant = ? AND id = ? AND committed_at IS NULL`), tenant, id)
	return err
}

// liveSession loads a session of the principal's device for a write in tx,
// locking it: whether it is committed and its stored answer. A session of
// another tenant or device is not found; an expired one is dropped, in a
// transaction of its own, and reported as not found.
func (s *Store) liveSession(ctx context.Context, tx *sql.Tx, p server.Principal, device, id string, lim server.Limits) (committed bool, result, cols string, err error) {
	var dev, user string
	var res sql.NullString
	var touched any
	err = tx.QueryRowContext(ctx, s.q(`SELECT device, user_name, result, coalesce(touched_at, created_at), cols FROM _tether_sessions
		WHERE tenant = ? AND id = ?`+s.d.ForUpdate()), p.Tenant, id).Scan(&dev, &user, &res, &touched, &cols)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && dev != device) {
		return false, "", "", fmt.Errorf("unknown session %q: %w", id, wire.ErrNotFound)
	}
	if err != nil {
		return false, "", "", fmt.Errorf("session %s: %w", id, err)
	}
	if user != p.User { // a session is its user's: no one else fills or commits it (G14)
		return false, "", "", fmt.Errorf("session %s was opened by another user: %w", id, wire.ErrForbidden)
	}
	if res.Valid {
		return true, res.String, cols, nil
	}
	at, err := timeOf(touched)
	if err != nil {
		return false, "", "", fmt.Errorf("session %s: %w", id, err)
	}
	if at.Before(s.now().Add(-lim.SessionIdle)) {
		if err := s.dropSession(ctx, tx, p.Tenant, id); err != nil {
			return false, "", "", fmt.Errorf("expire session %s: %w", id, err)
		}
		return false, "", "", &commitThen{fmt.Errorf("session %s expired after %v without a batch; its staged rows were discarded: %w",
			id, lim.SessionIdle, wire.ErrNotFound)}
	}
	return false, "", cols, nil
}

// bounded checks that a batch of rows and size bytes fits its session's
// and its tenant's bounds, with what they staged already.
func (s *Store) bounded(ctx context.Context, tx *sql.Tx, p server.Principal, session string, rows []wire.Row, size int64, lim server.Limits) error {
	var n, bytes, tenant int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT coalesce(sum("rows"), 0), coalesce(sum(bytes), 0) FROM _tether_batches WHERE tenant = ? AND session = ?`),
		p.Tenant, session).Scan(&n, &bytes)
	if err != nil {
		return err
	}
	if n+int64(len(rows)) > int64(lim.MaxSessionRows) || bytes+size > lim.MaxSessionBytes {
		return fmt.Errorf("session %s holds %d rows and %d bytes: with %d rows and %d bytes more it would pass the limit of %d rows or %d bytes (MaxSessionRows, MaxSessionBytes): commit it and go on in a new session: %w",
			session, n, bytes, len(rows), size, lim.MaxSessionRows, lim.MaxSessionBytes, wire.ErrSessionFull)
	}
	if err := tx.QueryRowContext(ctx, s.q(`SELECT coalesce(sum(bytes), 0) FROM _tether_batches WHERE tenant = ?`), p.Tenant).Scan(&tenant); err != nil {
		return err
	}
	if tenant+size > lim.MaxTenantStagedBytes {
		return fmt.Errorf("the tenant's open sessions hold %d bytes, the limit is %d (MaxTenantStagedBytes): try again once sessions commit or expire: %w",
			tenant, lim.MaxTenantStagedBytes, wire.ErrRateLimited)
	}
	return nil
}

// Sweep implements server.Store: it discards up to max uncommitted
// sessions idle for longer than lim.SessionIdle, of any tenant, with their
// staged rows; then, for each tenant, up to max tombstones every active
// device has pulled past; then up to max committed sessions and audit
// entries past their retention.
func (s *Store) Sweep(ctx context.Context, lim server.Limits, max int) (int, error) {
	lim = lim.WithDefaults()
	n := 0
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT tenant, id FROM _tether_sessions WHERE committed_at IS NULL
			AND coalesce(touched_at, created_at) < ? LIMIT ?`), s.d.Time(s.now().Add(-lim.SessionIdle)), max)
		if err != nil {
			return err
		}
		var expired [][2]string
		for rows.Next() {
			var tenant, id string
			if err := rows.Scan(&tenant, &id); err != nil {
				rows.Close()
				return err
			}
			expired = append(expired, [2]string{tenant, id})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, e := range expired {
			if err := s.dropSession(ctx, tx, e[0], e[1]); err != nil {
				return err
			}
		}
		n = len(expired)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sweep expired sessions: %w", err)
	}
	purged, err := s.purgeTombstones(ctx, lim, max)
	if err != nil {
		return n, fmt.Errorf("sweep tombstones: %w", err)
	}
	n += purged
	for _, q := range []struct {
		what, table, cond string
		before            time.Duration
	}{
		{"committed sessions", "_tether_sessions", "committed_at IS NOT NULL AND committed_at < ?", lim.SessionRetention},
		{"audit entries", "_tether_audit", "at < ?", lim.AuditRetention},
	} {
		m, err := s.deleteOld(ctx, q.table, q.cond, s.d.Time(s.now().Add(-q.before)), max)
		if err != nil {
			return n, fmt.Errorf("sweep %s: %w", q.what, err)
		}
		n += m
	}
	return n, nil
}

// deleteOld deletes up to max rows of a bookkeeping table matching cond
// (one parameter), by key, in one transaction.
func (s *Store) deleteOld(ctx context.Context, table, cond string, arg any, max int) (int, error) {
	key := map[string]string{"_tether_sessions": "tenant, id", "_tether_audit": "tenant, version, tbl, id"}[table]
	n := 0
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+key+` FROM `+table+` WHERE `+cond+` LIMIT ?`), arg, max)
		if err != nil {
			return err
		}
		var keys [][]any
		for rows.Next() {
			k := make([]any, strings.Count(key, ",")+1)
			ptrs := make([]any, len(k))
			for i := range k {
				ptrs[i] = &k[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		where := strings.ReplaceAll(key, ",", " = ? AND") + " = ?"
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+table+` WHERE `+where), k...); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}

// purgeTombstones moves each tenant's horizon up to the oldest position an
// active device has pulled to (or, with no active device, to the latest
// version), and deletes up to max of the tombstones at or before it.
func (s *Store) purgeTombstones(ctx context.Context, lim server.Limits, most int) (int, error) {
	var tenants []string
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		var err error
		tenants, err = s.strings(ctx, tx, `SELECT DISTINCT tenant FROM _tether_devices`)
		return err
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, tenant := range tenants {
		err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
			var active sql.NullInt64
			if err := tx.QueryRowContext(ctx, s.q(`SELECT min(pulled) FROM _tether_devices WHERE tenant = ? AND seen_at >= ?`),
				tenant, s.d.Time(s.now().Add(-lim.DeviceActivity))).Scan(&active); err != nil {
				return err
			}
			horizon := active.Int64
			if !active.Valid { // nobody active: every deletion is history
				for _, t := range s.tables {
					var v int64
					if err := tx.QueryRowContext(ctx, s.q(`SELECT coalesce(max("_version"), 0) FROM `+t.Name+` WHERE "_tenant" = ?`), tenant).Scan(&v); err != nil {
						return err
					}
					horizon = max(horizon, v+1)
				}
			}
			var stored int64
			err := tx.QueryRowContext(ctx, s.q(`SELECT version FROM _tether_horizons WHERE tenant = ?`+s.d.ForUpdate()), tenant).Scan(&stored)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if horizon > 0 {
					if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO _tether_horizons (tenant, version) VALUES (?, ?)`), tenant, horizon); err != nil {
						return err
					}
				}
			case err != nil:
				return err
			case horizon > stored:
				if _, err := tx.ExecContext(ctx, s.q(`UPDATE _tether_horizons SET version = ? WHERE tenant = ?`), horizon, tenant); err != nil {
					return err
				}
			default:
				horizon = stored
			}
			for _, t := range s.tables {
				// Strictly before the horizon: a device recorded at the
				// horizon may not have stored the page that ended there.
				ids, err := s.strings(ctx, tx, `SELECT "id" FROM `+t.Name+` WHERE "_tenant" = ? AND "_deleted" AND "_version" < ? LIMIT ?`, tenant, horizon, most)
				if err != nil {
					return err
				}
				for _, id := range ids {
					if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Name+` WHERE "_tenant" = ? AND "id" = ?`), tenant, id); err != nil {
						return err
					}
				}
				n += len(ids)
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("tenant %s: %w", tenant, err)
		}
	}
	return n, nil
}

// StageBatch implements server.Store.
func (s *Store) StageBatch(ctx context.Context, p server.Principal, device, session string, seq int, rows []wire.Row, lim server.Limits) error {
	_, err := s.Push(ctx, p, device, session, seq, rows, server.PushOptions{Limits: lim})
	return err
}

// Commit implements server.Store.
func (s *Store) Commit(ctx context.Context, p server.Principal, device, session string, resolve server.Resolver, lim server.Limits, settle *server.LastBatch) (wire.Commit, error) {
	lim = lim.WithDefaults()
	var c wire.Commit
	fresh := false
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		c, fresh = wire.Commit{}, false // a retried transaction starts over
		committed, result, _, err := s.liveSession(ctx, tx, p, device, session, lim)
		if err != nil {
			return err
		}
		if committed { // a re-sent commit gets the first answer (G3)
			var stored storedCommit
			if err := json.Unmarshal([]byte(result), &stored); err != nil {
				return fmt.Errorf("stored result: %w", err)
			}
			c = stored.Commit
			c.Settled = settle != nil && stored.Last != nil && *stored.Last == *settle
			return nil
		}
		if settle != nil {
			// The batch to settle was not committed, so it was not staged:
			// what is staged from its number on is an earlier attempt's.
			if err := s.dropFrom(ctx, tx, p.Tenant, session, settle.Seq); err != nil {
				return err
			}
		}
		fresh = true
		return s.commitTx(ctx, tx, p, device, session, resolve, nil, &c)
	})
	if err != nil {
		if errors.Is(err, wire.ErrNotFound) {
			return wire.Commit{}, err
		}
		return wire.Commit{}, fmt.Errorf("commit session %s: %w", session, err)
	}
	s.committed(p, device, c, fresh)
	return c, nil
}

// Push implements server.Store: it opens the session if asked, stages the
// batch and commits the session if asked, in one transaction.
func (s *Store) Push(ctx context.Context, p server.Principal, device, session string, seq int, rows []wire.Row, o server.PushOptions) (*wire.Commit, error) {
	lim := o.Limits.WithDefaults()
	t := s.byName[rows[0].Table]
	if t == nil {
		return nil, fmt.Errorf("stage batch %d: unknown table %q: %w", seq, rows[0].Table, wire.ErrBadRequest)
	}
	size := int64(0)
	for _, r := range rows {
		size += int64(r.Size())
	}
	var c *wire.Commit
	fresh := false
	err := s.inTx(ctx, func(conn *sql.Conn, tx *sql.Tx) error {
		c, fresh = nil, false // a retried transaction starts over
		if o.Open {
			// A request that commits may come twice (see
			// server.PushOptions): its session is committed then, which
			// the commit below answers.
			err := s.openTx(ctx, tx, p, device, session, true, lim)
			if err != nil && !errors.Is(err, errOpened) && (o.Commit == nil || !errors.Is(err, errCommitted)) {
				return fmt.Errorf("open session: %w", err)
			}
		}
		committed, result, cols, err := s.liveSession(ctx, tx, p, device, session, lim)
		if err != nil {
			return err
		}
		if committed {
			if o.Commit == nil {
				return fmt.Errorf("session %s is already committed: %w", session, wire.ErrConflict)
			}
			c = &wire.Commit{}
			return storedAnswer(result, session, o.Commit, c)
		}
		if err := s.stageTx(ctx, conn, tx, p, session, seq, o.Attempt, t, rows, size, cols, lim); err != nil {
			return err
		}
		if o.Commit == nil {
			return nil
		}
		c, fresh = &wire.Commit{}, true
		return s.commitTx(ctx, tx, p, device, session, o.Resolve, o.Commit, c)
	})
	if err != nil {
		if errors.Is(err, wire.ErrNotFound) || errors.Is(err, wire.ErrConflict) {
			return nil, err
		}
		return nil, fmt.Errorf("stage batch %d of session %s: %w", seq, session, err)
	}
	if c != nil {
		s.committed(p, device, *c, fresh)
	}
	return c, nil
}

// storedAnswer reads the answer a committed session keeps into c: for a
// commit that carries the last batch, only if it is the batch that
// committed the session.
func storedAnswer(result, session string, last *server.LastBatch, c *wire.Commit) error {
	var stored storedCommit
	if err := json.Unmarshal([]byte(result), &stored); err != nil {
		return fmt.Errorf("stored result: %w", err)
	}
	if last != nil && (stored.Last == nil || *stored.Last != *last) {
		return fmt.Errorf("session %s is already committed, without batch %d as sent now: %w", session, last.Seq, wire.ErrConflict)
	}
	*c = stored.Commit
	return nil
}

// committed tells the tenant's listeners in this process of a fresh
// commit (a CrossProcess dialect told every process inside the commit).
func (s *Store) committed(p server.Principal, device string, c wire.Commit, fresh bool) {
	if _, cross := s.d.(CrossProcess); fresh && !cross {
		s.events.publish(p.Tenant, wire.Event{Version: c.Version, Device: device})
	}
}

// stageTx stages a batch of rows of table t, size bytes as RowSize counts
// them, in an open session whose device has the columns cols.
func (s *Store) stageTx(ctx context.Context, conn *sql.Conn, tx *sql.Tx, p server.Principal, session string, seq int, attempt int64, t *Table, rows []wire.Row, size int64, cols string, lim server.Limits) error {
	if err := deviceColumns(t, cols, rows); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE _tether_sessions SET touched_at = ? WHERE tenant = ? AND id = ?`),
		s.d.Time(s.now()), p.Tenant, session); err != nil {
		return err
	}
	// A re-sent batch replaces the first one (G3), unless it comes from
	// an earlier attempt than the copy staged: a request delayed on the
	// way (a proxy that retried it) must not undo a newer one.
	var old string
	var staged int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT tbl, attempt FROM _tether_batches WHERE tenant = ? AND session = ? AND seq = ?`),
		p.Tenant, session, seq).Scan(&old, &staged)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	case attempt < staged:
		return fmt.Errorf("batch %d of session %s was staged again by a later attempt (%d, this is %d): %w", seq, session, staged, attempt, errStaleAttempt)
	default:
		if ot := s.byName[old]; ot != nil {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+ot.Stage+` WHERE "_tenant" = ? AND "_session" = ? AND "_seq" = ?`),
				p.Tenant, session, seq); err != nil {
				return fmt.Errorf("replace: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_batches WHERE tenant = ? AND session = ? AND seq = ?`),
			p.Tenant, session, seq); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
	}
	if err := s.bounded(ctx, tx, p, session, rows, size, lim); err != nil {
		return err
	}
	if err := s.d.Stage(ctx, conn, tx, t, p.Tenant, session, seq, rows); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO _tether_batches (tenant, session, seq, tbl, "rows", bytes, attempt) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		p.Tenant, session, seq, t.T.Name, len(rows), size, attempt)
	return err
}

// commitTx commits an open session in tx into c.
func (s *Store) commitTx(ctx context.Context, tx *sql.Tx, p server.Principal, device, session string, resolve server.Resolver, last *server.LastBatch, c *wire.Commit) error {
	// A commit by its last batch says how many batches it committed (a
	// plain commit does not: clients of the first version of the
	// one-request push took it as telling whether their last batch went
	// in, which a stale batch could fake).
	if last != nil {
		var top sql.NullInt64
		if err := tx.QueryRowContext(ctx, s.q(`SELECT max(seq) FROM _tether_batches WHERE tenant = ? AND session = ?`),
			p.Tenant, session).Scan(&top); err != nil {
			return err
		}
		if top.Valid {
			c.Batches = int(top.Int64) + 1
		}
	}
	var err error
	if c.Version, err = s.d.NextVersion(ctx, tx, p.Tenant); err != nil {
		return fmt.Errorf("next version: %w", err)
	}
	ap := &applier{s: s, tx: tx, p: p, device: device, session: session, resolve: resolve, at: s.d.Time(s.now())}
	for _, t := range s.tables { // parents before children (G4)
		if err := ap.applyTable(ctx, t, c); err != nil {
			return fmt.Errorf("%s: %w", t.T.Name, err)
		}
	}
	if err := ap.references(ctx, c); err != nil { // G12
		return err
	}
	res, err := json.Marshal(storedCommit{Commit: *c, Last: last})
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE _tether_sessions SET committed_at = ?, version = ?, result = ? WHERE tenant = ? AND id = ?`),
		s.d.Time(s.now()), c.Version, string(res), p.Tenant, session); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_batches WHERE tenant = ? AND session = ?`), p.Tenant, session); err != nil {
		return err
	}
	if cross, ok := s.d.(CrossProcess); ok { // delivered to every process when the commit is
		return cross.Notify(ctx, tx, Notice{Tenant: p.Tenant, Version: c.Version, Device: device})
	}
	return nil
}

// storedCommit is a commit's answer as the session keeps it, with the
// batch whose request committed it, if one did.
type storedCommit struct {
	wire.Commit
	Last *server.LastBatch `json:"last,omitempty"`
}

// applier applies the staged rows of one session inside its transaction.
type applier struct {
	s       *Store
	tx      *sql.Tx
	p       server.Principal
	device  string
	session string
	resolve server.Resolver
	at      any // server time of the commit, for the audit log
}

func (a *applier) applyTable(ctx context.Context, t *Table, c *wire.Commit) error {
	s := a.s
	latest := s.d.Latest(t)
	// Rows whose server row moved since the version they were based on,
	// by another session, are conflicts for the resolver. Conflicts are
	// rare; the ids are collected first, then resolved one by one.
	ids, err := s.strings(ctx, a.tx, `SELECT s."id" FROM (`+latest+`) AS s JOIN `+t.Name+` AS t ON t."_tenant" = ? AND t."id" = s."id"
		WHERE t."_version" <> s."_base" AND t."_session" <> s."_session" ORDER BY s."id"`, a.p.Tenant, a.session, a.p.Tenant)
	if err != nil {
		return fmt.Errorf("find conflicts: %w", err)
	}
	for _, id := range ids {
		if err := a.resolveRow(ctx, t, latest, id, c); err != nil {
			return fmt.Errorf("%q: %w", id, err)
		}
	}
	// Everything still staged goes in with one statement, and into the
	// audit log with another.
	all, allVersions := t.everyColumn(c.Version)
	if _, err := a.tx.ExecContext(ctx, s.q(s.merge(t)), a.p.Tenant, c.Version, a.p.User, a.device, all, allVersions, c.Version,
		a.p.Tenant, a.session, a.p.Tenant); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	res, err := a.tx.ExecContext(ctx, s.q(`INSERT INTO _tether_audit (tenant, version, tbl, id, deleted, user_name, device, session, at)
		SELECT ?, ?, ?, "id", "_deleted", ?, ?, "_session", ? FROM (`+latest+`) AS s`),
		a.p.Tenant, c.Version, t.T.Name, a.p.User, a.device, a.at, a.p.Tenant, a.session)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	n, err := res.RowsAffected() // one audit entry per applied row
	if err != nil {
		return err
	}
	c.Applied += int(n)
	_, err = a.tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ?`), a.p.Tenant, a.session)
	return err
}

// resolveRow asks the resolver about one conflicting staged row: it drops
// the row from the stage when the server's row wins, and replaces it with
// the merge when there is one.
func (a *applier) resolveRow(ctx context.Context, t *Table, latest, id string, c *wire.Commit) error {
	s := a.s
	var colvers string
	cur, err := scanRow(&t.T, a.tx.QueryRowContext(ctx, s.q(`SELECT `+t.selects+`, `+s.d.Text(`"_colvers"`)+` FROM `+t.Name+
		` WHERE "_tenant" = ? AND "id" = ?`), a.p.Tenant, id).Scan, &colvers)
	if err != nil {
		return fmt.Errorf("read server row: %w", err)
	}
	staged, err := scanStaged(&t.T, a.tx.QueryRowContext(ctx, s.q(`SELECT `+t.ColumnList()+`, "_base", "_deleted", "_hlc", "_changed", "_present" FROM (`+
		latest+`) AS s WHERE "id" = ?`), a.p.Tenant, a.session, id).Scan)
	if err != nil {
		return err
	}
	cf, merged, err := decide(ctx, a.resolve, &t.T, cur, staged, colvers, c.Version, a.device, a.p.User)
	if err != nil {
		return err
	}
	c.Conflicts = append(c.Conflicts, cf)
	switch {
	case cf.Winner == wire.WinnerServer:
		_, err = a.tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ? AND "id" = ?`), a.p.Tenant, a.session, id)
	case merged != nil:
		args := []any{merged.Deleted, merged.HLC, ChangedJSON(&t.T, *merged), Present(&t.T, *merged)}
		sets := []string{`"_deleted" = ?`, `"_hlc" = ?`, `"_changed" = ?`, `"_present" = ?`, `"_exact" = 0`}
		for i, col := range t.T.Columns[1:] {
			sets = append(sets, t.Cols[i+1]+" = ?")
			args = append(args, merged.Values[col.Name])
		}
		// Every staged copy of the row: the merge applies the latest.
		_, err = a.tx.ExecContext(ctx, s.q(`UPDATE `+t.Stage+` SET `+strings.Join(sets, ", ")+` WHERE "_tenant" = ? AND "_session" = ? AND "id" = ?`),
			append(args, a.p.Tenant, a.session, id)...)
	}
	return err
}

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
		where, args := s.afterClause(t.Idx, after)
		q := s.q(`SELECT ` + t.selects + `, "_session", "_pushed" FROM ` + t.Name + ` WHERE "_tenant" = ? AND ` + where + ` ORDER BY "_version", "id" LIMIT ?`)
		rows, err := tx.QueryContext(ctx, q, append(append([]any{p.Tenant}, args...), limit+1)...)
		if err != nil {
			return nil, after, false, fmt.Errorf("changes %s: %w", t.T.Name, err)
		}
		taken := 0
		for rows.Next() {
			var session string
			var pushed int64
			r, err := scanRow(&t.T, rows.Scan, &session, &pushed)
			if err != nil {
				rows.Close()
				return nil, after, false, fmt.Errorf("changes %s: %w", t.T.Name, err)
			}
			c := changed{pos: server.Cursor{Version: r.Version, Table: t.Idx, ID: r.ID}, row: r, size: r.Size(),
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
			return nil, after, false, fmt.Errorf("changes %s: %w", t.T.Name, err)
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

// Audit implements server.Store. The log is the _tether_audit table.
func (s *Store) Audit(ctx context.Context, tenant string, after int64, limit int) ([]server.AuditEntry, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT version, tbl, id, deleted, user_name, device, session, at FROM _tether_audit
		WHERE tenant = ? AND version > ? ORDER BY version, tbl, id LIMIT ?`), tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	var out []server.AuditEntry
	for rows.Next() {
		var e server.AuditEntry
		var deleted, at any
		if err := rows.Scan(&e.Version, &e.Table, &e.ID, &deleted, &e.User, &e.Device, &e.Session, &at); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		d, err := entity.KindBool.FromDB(deleted)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		e.Deleted, _ = d.(bool)
		if e.At, err = timeOf(at); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Digest implements server.Store: the table's rows of the tenant in
// byte order of their ids, whatever the database's collation.
func (s *Store) Digest(ctx context.Context, p server.Principal, table string, columns []string) (wire.TableDigest, error) {
	t := s.byName[table]
	if t == nil {
		return wire.TableDigest{}, fmt.Errorf("digest: unknown table %q: %w", table, wire.ErrBadRequest)
	}
	sub, list := t.T, t.ColumnList()
	if columns != nil { // the columns a device has
		sub.Columns = nil
		var quoted []string
		for i, name := range columns {
			c, ok := t.T.Column(name)
			if !ok || (i == 0) != (name == "id") {
				return wire.TableDigest{}, fmt.Errorf("digest %s: column %q: unknown, or id not first: %w", table, name, wire.ErrBadRequest)
			}
			sub.Columns = append(sub.Columns, c)
			quoted = append(quoted, Quote(name))
		}
		list = strings.Join(quoted, ", ")
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT "_deleted", `+list+` FROM `+t.Name+` WHERE "_tenant" = ? AND NOT "_deleted" ORDER BY `+
		s.d.ByteOrder(`"id"`)), p.Tenant)
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

// Subscribe implements server.Store. With a CrossProcess dialect the
// commits of every server process on the database are seen; otherwise
// those of this process.
func (s *Store) Subscribe(ctx context.Context, tenant string) (<-chan wire.Event, error) {
	cross, ok := s.d.(CrossProcess)
	if !ok {
		return s.events.subscribe(ctx, tenant), nil
	}
	s.listenOnce.Do(func() {
		lctx, stop := context.WithCancel(context.Background())
		s.stop = stop
		go s.listen(lctx, cross)
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

// listen relays notices to the subscribers until ctx ends, listening again
// with backoff when the connection fails. After that every subscriber gets
// an event, since notices may have been missed meanwhile.
func (s *Store) listen(ctx context.Context, cross CrossProcess) {
	defer close(s.stopped)
	wait := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		_ = cross.Listen(ctx, func() {
			if first {
				close(s.listenReady)
				first = false
			} else {
				s.events.publishAll(wire.Event{})
			}
			wait = 100 * time.Millisecond
		}, func(n Notice) {
			s.events.publish(n.Tenant, wire.Event{Version: n.Version, Device: n.Device})
		})
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// merge is the statement that applies the rows of Latest to t: each row is
// inserted, or updates the row it replaces, writing only the columns it
// holds (Present): the others keep their values, or take their defaults in
// a new row. Its parameters are tenant, version, user, device, version,
// tenant, session, tenant.
func (s *Store) merge(t *Table) string {
	if q, ok := s.merges.Load(t.Idx); ok {
		return q.(string)
	}
	vals := []string{`s."id"`}
	for i, c := range t.T.Columns[1:] {
		col := t.Cols[i+1]
		vals = append(vals, fmt.Sprintf(`CASE WHEN s."_present" = '' OR substr(s."_present", %d, 1) = '1' THEN s.%s WHEN t."id" IS NULL THEN %s ELSE t.%s END`,
			i+1, col, c.Default(), col))
	}
	q := fmt.Sprintf(`INSERT INTO %s ("_tenant", %s, %s, "_colvers")
		SELECT ?, %s, ?, s."_deleted", s."_hlc", ?, ?, s."_session", '', '', s."_exact", %s
		FROM (%s) AS s LEFT JOIN %s AS t ON t."_tenant" = ? AND t."id" = s."id" WHERE 1 = 1 ORDER BY s."id"
		%s`,
		// A row that changed every column (a new one, the common case)
		// takes the column versions computed once for the commit.
		t.Name, t.ColumnList(), strings.Join(Bookkeeping, ", "), strings.Join(vals, ", "),
		`CASE WHEN s."_changed" = ? THEN `+s.d.JSON("?")+` ELSE `+s.d.ColumnVersions(`s."_changed"`)+` END`,
		s.d.Latest(t), t.Name, s.d.Upsert(t))
	s.merges.Store(t.Idx, q)
	return q
}

// deviceColumns checks that rows, all of table t, fit the schema of the
// device that pushes them (cols, as it registered; "" for the server's):
// no column it does not have, and every non-nullable one it has, in a live
// row.
func deviceColumns(t *Table, cols string, rows []wire.Row) error {
	own := &t.T
	if cols != "" {
		var schema entity.Schema
		if err := json.Unmarshal([]byte(cols), &schema); err != nil {
			return fmt.Errorf("the device's schema: %w", err)
		}
		if own = schema.Table(t.T.Name); own == nil {
			return fmt.Errorf("table %s is not in the schema the device registered: %w", t.T.Name, wire.ErrBadRequest)
		}
	}
	for i, r := range rows {
		for name := range r.Values {
			if _, ok := own.Column(name); !ok {
				return fmt.Errorf("row %d (%s %q): column %s is not in the schema the device registered: %w", i, r.Table, r.ID, name, wire.ErrBadRequest)
			}
		}
		if r.Deleted {
			continue
		}
		for _, c := range own.Columns[1:] {
			if _, ok := r.Values[c.Name]; !ok && !c.Nullable {
				return fmt.Errorf("row %d (%s %q) lacks column %s: %w", i, r.Table, r.ID, c.Name, wire.ErrBadRequest)
			}
		}
	}
	return nil
}

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
				return wire.Snapshot{}, fmt.Errorf("snapshot %s: %w", t.T.Name, err)
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
			return wire.Snapshot{}, fmt.Errorf("snapshot %s: %w", t.T.Name, err)
		}
		full := false
		for rows.Next() {
			r, err := scanRow(&t.T, rows.Scan)
			if err != nil {
				rows.Close()
				return wire.Snapshot{}, fmt.Errorf("snapshot %s: %w", t.T.Name, err)
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
			return wire.Snapshot{}, fmt.Errorf("snapshot %s: %w", t.T.Name, err)
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
