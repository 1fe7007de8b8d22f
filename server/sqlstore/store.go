package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
)

var _ server.Store = (*Store)(nil)

// Store is a server.Store over a SQL database: the session and commit flow,
// written once, over a Dialect. It is safe for concurrent use.
type Store struct {
	w, r   *sql.DB // writes and reads; the same pool but for SQLite
	office *sql.DB // the back office's pool (DB); default r
	// writer queues the write transactions in order when the writer pool
	// has one connection (SQLite's single writer): database/sql hands a
	// freed connection to a random waiter, so that under load some
	// requests waited many turns; a channel serves its waiters in order.
	// nil for a pool of several connections.
	writer  chan struct{}
	d       Dialect
	schema  entity.Schema
	tables  []*Table // in priority order
	byName  map[string]*Table
	now     func() time.Time
	log     *slog.Logger
	rebound sync.Map // query -> query in the dialect's placeholders
	merges  sync.Map // table index -> merge statement
	refs    []ref    // the schema's references
	scope   scoping  // set once, by UseScopes, before serving

	capturing atomic.Bool // external writes are captured (CaptureExternal)

	schemaMu sync.Mutex
	schemas  map[string]*entity.Schema // parsed device schemas, by tenant and id
	onClose  func() error
	// onCommit and beforeClose: see Options
	onCommit, beforeClose func()

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
	// Office is the pool DB returns, for a back office's own SQL; default
	// Read. SQLite's store gives it one of its own: its other pools plan
	// statements without the values bound to them
	// (sqlitedriver.Config.Stable), which an app's LIKE ? would not want.
	Office *sql.DB
	// OnClose runs when the store closes, after its pools are closed.
	OnClose func() error
	// OnCommit, if set, runs after each write transaction of the store
	// commits, and BeforeClose when the store closes, before its pools
	// do: SQLite's checkpointer (sqlitedriver.Checkpointer).
	OnCommit, BeforeClose func()
	// Now is the clock of the time-based rules; default time.Now.
	Now func() time.Time
	// Logger receives the store's background errors (a lost listener of
	// other processes' commits); default slog.Default().
	Logger *slog.Logger
}

// New returns a store over db with dialect d, after creating or upgrading
// the tables of schema. The store owns db (and opts.Read): Close closes
// them.
func New(ctx context.Context, db *sql.DB, d Dialect, schema entity.Schema, opts Options) (*Store, error) {
	if err := schema.Validate(); err != nil {
		return nil, err
	}
	s := &Store{w: db, r: opts.Read, d: d, schema: schema, byName: map[string]*Table{}, now: time.Now,
		schemas: map[string]*entity.Schema{},
		onClose: opts.OnClose, onCommit: opts.OnCommit, beforeClose: opts.BeforeClose, events: newBroadcaster(), listenReady: make(chan struct{}), stopped: make(chan struct{})}
	if s.r == nil {
		s.r = db
	}
	if s.office = opts.Office; s.office == nil {
		s.office = s.r
	}
	if db.Stats().MaxOpenConnections == 1 {
		s.writer = make(chan struct{}, 1)
	}
	if opts.Now != nil {
		s.now = opts.Now
	}
	if s.log = opts.Logger; s.log == nil {
		s.log = slog.Default()
	}
	for i, t := range schema.Tables {
		tb := newTable(i, t)
		s.tables = append(s.tables, tb)
		s.byName[t.Name] = tb
	}
	s.refs = refs(s.tables, s.byName)
	err := s.migrate(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return s, nil
}

// Schema implements server.Store.
func (s *Store) Schema() entity.Schema { return s.schema }

// DB returns a pool for the plain SQL queries of a back office
// (Options.Office). Synced tables carry the entity columns plus _tenant,
// _version, _deleted, _hlc, _modified_by, _origin and _session.
func (s *Store) DB() *sql.DB { return s.office }

// Close implements server.Store.
func (s *Store) Close() error {
	s.listenOnce.Do(func() {}) // no listener starts after this
	if s.stop != nil {
		s.stop()
		<-s.stopped
	}
	if s.beforeClose != nil {
		s.beforeClose()
	}
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	if s.office != s.r && s.office != s.w {
		err = errors.Join(err, s.office.Close())
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
	leave, err := s.enterWriter(ctx)
	if err != nil {
		return err
	}
	defer leave()
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
			if cerr := s.commit(tx); cerr != nil {
				return cerr
			}
			return then.err
		}
		return err
	}
	return s.commit(tx)
}

// exec runs one write statement (query in '?' placeholders) outside a
// transaction of the flow, in the writer queue like tx, and tells
// Options.OnCommit.
func (s *Store) exec(ctx context.Context, query string, args ...any) error {
	leave, err := s.enterWriter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	if _, err := s.w.ExecContext(ctx, s.q(query), args...); err != nil {
		return err
	}
	s.wrote()
	return nil
}

// enterWriter waits for the turn of a write in the queue of a single
// writer (see Store.writer), and returns the function that ends it.
func (s *Store) enterWriter(ctx context.Context) (leave func(), err error) {
	if s.writer == nil {
		return func() {}, nil
	}
	select {
	case s.writer <- struct{}{}:
		return func() { <-s.writer }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// commit commits tx, a write transaction, and tells Options.OnCommit.
func (s *Store) commit(tx *sql.Tx) error {
	if err := tx.Commit(); err != nil {
		return err
	}
	s.wrote()
	return nil
}

// wrote tells Options.OnCommit of a write committed.
func (s *Store) wrote() {
	if s.onCommit != nil {
		s.onCommit()
	}
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

// strings runs a query of one text column in tx.
func (s *Store) strings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, s.q(query), args...)
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
