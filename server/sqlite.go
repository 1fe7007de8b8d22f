package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3" // the SQLite driver

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlbatch"
	"github.com/tethersync/tether/wire"
)

// SQLiteStore is the embedded Store: one SQLite file, for one server
// process. Writes are serialized by SQLite, so server versions are
// allocated and made visible in commit order (G1). It is safe for
// concurrent use.
type SQLiteStore struct {
	w      *sql.DB // the single writer connection
	r      *sql.DB // readers
	schema entity.Schema
	tables []*storeTable // in priority order
	byName map[string]*storeTable
	now    func() time.Time
	events *broadcaster
}

// storeTable holds the SQL of one synced table on the server.
type storeTable struct {
	idx     int
	t       entity.Table
	selects string // id, value columns, then rowCols
	stage   string // name of the staging table of pushed rows
	stageIn string // insert of staged rows, up to VALUES
	merge   string // applies a session's staged rows in one statement
	staged  string // reads one staged row
}

// OpenSQLite opens or creates the server database at path with tables for
// schema. It adds missing tables and columns and never drops any.
func OpenSQLite(path string, schema entity.Schema) (*SQLiteStore, error) {
	if err := schema.Validate(); err != nil {
		return nil, fmt.Errorf("server: open %s: %w", path, err)
	}
	s := &SQLiteStore{schema: schema, byName: map[string]*storeTable{}, now: time.Now, events: newBroadcaster()}
	open := func(txlock string) (*sql.DB, error) {
		q := url.Values{}
		q.Set("_journal_mode", "WAL")
		q.Set("_busy_timeout", "10000")
		q.Set("_txlock", txlock)
		q.Set("_synchronous", "NORMAL")
		q.Set("_stmt_cache_size", "64")
		return sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	}
	var err error
	if s.w, err = open("immediate"); err != nil {
		return nil, fmt.Errorf("server: open %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	if s.r, err = open("deferred"); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("server: open %s: %w", path, err)
	}
	if err := s.migrate(); err != nil {
		s.Close()
		return nil, fmt.Errorf("server: open %s: %w", path, err)
	}
	return s, nil
}

const storeDDL = `
CREATE TABLE IF NOT EXISTS _tether_counter (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT OR IGNORE INTO _tether_counter (id, version) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS _tether_devices (
	device TEXT PRIMARY KEY, tenant TEXT NOT NULL, user TEXT NOT NULL,
	created_at TEXT NOT NULL, seen_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS _tether_sessions (
	id TEXT PRIMARY KEY, tenant TEXT NOT NULL, device TEXT NOT NULL, user TEXT NOT NULL,
	created_at TEXT NOT NULL, committed_at TEXT, version INTEGER, result TEXT);
CREATE TABLE IF NOT EXISTS _tether_audit (
	tenant TEXT NOT NULL, version INTEGER NOT NULL, tbl TEXT NOT NULL, id TEXT NOT NULL, deleted INTEGER NOT NULL,
	user TEXT NOT NULL, device TEXT NOT NULL, session TEXT NOT NULL, at TEXT NOT NULL,
	PRIMARY KEY (tenant, version, tbl, id));
CREATE TABLE IF NOT EXISTS _tether_batches (
	session TEXT NOT NULL, seq INTEGER NOT NULL, tbl TEXT NOT NULL, rows INTEGER NOT NULL, body BLOB NOT NULL,
	PRIMARY KEY (session, seq));
`

func (s *SQLiteStore) migrate() error {
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, storeDDL); err != nil {
		return fmt.Errorf("create bookkeeping tables: %w", err)
	}
	if err := addColumns(ctx, tx, "_tether_sessions", []entity.Column{{Name: "touched_at", Kind: entity.KindTime}}); err != nil {
		return err
	}
	// Sessions staged by an older version kept their rows as JSON in
	// _tether_batches. Forget them: their devices get "not found" at
	// commit and push again in a new session.
	if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_sessions WHERE committed_at IS NULL
		AND id IN (SELECT session FROM _tether_batches WHERE length(body) > 0);
		DELETE FROM _tether_batches WHERE length(body) > 0`); err != nil {
		return fmt.Errorf("drop sessions staged by an older version: %w", err)
	}
	for i, t := range s.schema.Tables {
		st := newStoreTable(i, t)
		if err := st.migrate(ctx, tx); err != nil {
			return fmt.Errorf("table %s: %w", t.Name, err)
		}
		s.tables = append(s.tables, st)
		s.byName[t.Name] = st
	}
	return tx.Commit()
}

func qi(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func newStoreTable(idx int, t entity.Table) *storeTable {
	var names, sets []string
	for i, c := range t.Columns {
		names = append(names, qi(c.Name))
		if i > 0 {
			sets = append(sets, fmt.Sprintf("%s = excluded.%s", qi(c.Name), qi(c.Name)))
		}
	}
	book := []string{`"_version"`, `"_deleted"`, `"_hlc"`, `"_modified_by"`, `"_origin"`, `"_session"`}
	for _, b := range book {
		sets = append(sets, fmt.Sprintf("%s = excluded.%s", b, b))
	}
	cols := strings.Join(names, ", ")
	stage := qi("_tether_stage_" + t.Name)
	return &storeTable{
		idx:     idx,
		t:       t,
		selects: cols + ", " + rowCols,
		stage:   stage,
		stageIn: fmt.Sprintf(`INSERT OR REPLACE INTO %s ("_session", "_seq", "_base", "_deleted", "_hlc", "_changed", %s)`, stage, cols),
		// The WHERE clause also keeps SQLite from reading ON CONFLICT as
		// a join constraint. _colvers records, per column, the version
		// that last changed it (for MergeColumns).
		merge: fmt.Sprintf(`INSERT INTO %s ("_tenant", %s, %s, "_colvers")
			SELECT ?, %s, ?, "_deleted", "_hlc", ?, ?, "_session",
				(SELECT json_group_object(j.value, ?) FROM json_each(s."_changed") AS j)
			FROM %s AS s WHERE "_session" = ? ORDER BY "id"
			ON CONFLICT ("_tenant", "id") DO UPDATE SET %s, "_colvers" = json_patch("_colvers", excluded."_colvers")`,
			qi(t.Name), cols, strings.Join(book, ", "), cols, stage, strings.Join(sets, ", ")),
		staged: fmt.Sprintf(`SELECT %s, "_base", "_deleted", "_hlc", "_changed" FROM %s WHERE "_session" = ? AND "id" = ?`, cols, stage),
	}
}

func (st *storeTable) migrate(ctx context.Context, tx *sql.Tx) error {
	q := qi(st.t.Name)
	var defs []string
	for _, c := range st.t.Columns {
		def := qi(c.Name) + " " + c.Kind.SQLiteType()
		if c.Name == "id" {
			def += " NOT NULL"
		}
		defs = append(defs, def)
	}
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	"_tenant" TEXT NOT NULL,
	%s,
	"_version" INTEGER NOT NULL,
	"_deleted" INTEGER NOT NULL DEFAULT 0,
	"_hlc" TEXT NOT NULL,
	"_modified_by" TEXT NOT NULL,
	"_origin" TEXT NOT NULL,
	"_session" TEXT NOT NULL,
	PRIMARY KEY ("_tenant", "id"))`, q, strings.Join(defs, ",\n\t"))
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if err := addColumns(ctx, tx, st.t.Name, st.t.Columns); err != nil {
		return err
	}
	if err := addBookkeeping(ctx, tx, st.t.Name, "_colvers", `TEXT NOT NULL DEFAULT '{}'`); err != nil {
		return err
	}
	stage := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	"_session" TEXT NOT NULL,
	"_seq" INTEGER NOT NULL,
	"_base" INTEGER NOT NULL,
	"_deleted" INTEGER NOT NULL,
	"_hlc" TEXT NOT NULL,
	%s,
	PRIMARY KEY ("_session", "id"));
CREATE INDEX IF NOT EXISTS %s ON %s ("_session", "_seq")`,
		st.stage, strings.Join(defs, ",\n\t"), qi("_tether_stage_"+st.t.Name+"__seq"), st.stage)
	if _, err := tx.ExecContext(ctx, stage); err != nil {
		return fmt.Errorf("create staging table: %w", err)
	}
	if err := addColumns(ctx, tx, "_tether_stage_"+st.t.Name, st.t.Columns); err != nil {
		return err
	}
	if err := addBookkeeping(ctx, tx, "_tether_stage_"+st.t.Name, "_changed", `TEXT NOT NULL DEFAULT '[]'`); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s ("_tenant", "_version", "id")`, qi(st.t.Name+"__changes"), q))
	return err
}

// addBookkeeping adds the bookkeeping column name with definition def to
// table when it lacks it.
func addBookkeeping(ctx context.Context, tx *sql.Tx, table, name, def string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, table, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s %s`, qi(table), qi(name), def)); err != nil {
		return fmt.Errorf("add column %s to %s: %w", name, table, err)
	}
	return nil
}

// addColumns adds the columns of cols that table lacks.
func addColumns(ctx context.Context, tx *sql.Tx, table string, cols []entity.Column) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		have[n] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range cols {
		if !have[c.Name] {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN %s %s`, qi(table), qi(c.Name), c.Kind.SQLiteType())); err != nil {
				return fmt.Errorf("add column %s to %s: %w", c.Name, table, err)
			}
		}
	}
	return nil
}

// Schema implements Store.
func (s *SQLiteStore) Schema() entity.Schema { return s.schema }

// Close implements Store.
func (s *SQLiteStore) Close() error {
	return errors.Join(s.w.Close(), s.r.Close())
}

func (s *SQLiteStore) stamp() string { return entity.FormatTime(s.now()) }

// RegisterDevice implements Store.
func (s *SQLiteStore) RegisterDevice(ctx context.Context, p Principal, device string) error {
	// A device of another tenant is left untouched, seen_at included.
	res, err := s.w.ExecContext(ctx, `INSERT INTO _tether_devices (device, tenant, user, created_at, seen_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (device) DO UPDATE SET seen_at = excluded.seen_at WHERE _tether_devices.tenant = excluded.tenant`,
		device, p.Tenant, p.User, s.stamp(), s.stamp())
	if err != nil {
		return fmt.Errorf("register device %s: %w", device, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("device %s is registered to another tenant: %w", device, wire.ErrForbidden)
	}
	return nil
}

// OpenSession implements Store.
func (s *SQLiteStore) OpenSession(ctx context.Context, p Principal, device, session string, lim Limits) (string, error) {
	lim = lim.withDefaults()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	defer tx.Rollback()
	var tenant string
	err = tx.QueryRowContext(ctx, `SELECT tenant FROM _tether_devices WHERE device = ?`, device).Scan(&tenant)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && tenant != p.Tenant) {
		return "", fmt.Errorf("device %s is not registered for this tenant: %w", device, wire.ErrForbidden)
	}
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	if session != "" {
		var tenant, dev string
		var committed sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT tenant, device, committed_at FROM _tether_sessions WHERE id = ?`, session).Scan(&tenant, &dev, &committed)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return "", fmt.Errorf("open session: %w", err)
		case tenant == p.Tenant && dev == device && !committed.Valid:
			return session, nil // opened before; the answer was lost
		default:
			return "", fmt.Errorf("session id %s is already in use: %w", session, wire.ErrConflict)
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM _tether_sessions WHERE device = ? AND committed_at IS NULL
		AND coalesce(touched_at, created_at) < ?`, device, entity.FormatTime(s.now().Add(-lim.SessionIdle)))
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	var idle []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return "", err
		}
		idle = append(idle, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	for _, id := range idle {
		if err := s.dropSession(ctx, tx, id); err != nil {
			return "", fmt.Errorf("open session: %w", err)
		}
	}
	var open int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM _tether_sessions WHERE device = ? AND committed_at IS NULL`, device).Scan(&open); err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	if open >= lim.MaxOpenSessions {
		return "", tooManySessions(device, lim)
	}
	id := session
	if id == "" {
		id = uuid.NewString()
	}
	now := s.stamp()
	_, err = tx.ExecContext(ctx, `INSERT INTO _tether_sessions (id, tenant, device, user, created_at, touched_at) VALUES (?, ?, ?, ?, ?, ?)`,
		id, p.Tenant, device, p.User, now, now)
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	return id, tx.Commit()
}

// dropSession deletes an uncommitted session and everything it staged.
func (s *SQLiteStore) dropSession(ctx context.Context, tx *sql.Tx, id string) error {
	for _, st := range s.tables {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE "_session" = ?`, st.stage), id); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_batches WHERE session = ?`, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM _tether_sessions WHERE id = ? AND committed_at IS NULL`, id)
	return err
}

// openSession loads an uncommitted session for a write, in tx. An expired
// one is dropped, in a transaction of its own, and reported as not found.
func (s *SQLiteStore) openSessionTx(ctx context.Context, tx *sql.Tx, p Principal, device, id string, lim Limits) (committed bool, result string, err error) {
	committed, result, touched, err := sessionOf(ctx, tx, p, device, id)
	if err != nil || committed {
		return committed, result, err
	}
	if touched < entity.FormatTime(s.now().Add(-lim.SessionIdle)) {
		tx.Rollback()
		if err := s.expire(ctx, id); err != nil {
			return false, "", err
		}
		return false, "", expiredError(id, lim.SessionIdle)
	}
	return false, "", nil
}

// expire drops an expired session.
func (s *SQLiteStore) expire(ctx context.Context, id string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.dropSession(ctx, tx, id); err != nil {
		return fmt.Errorf("expire session %s: %w", id, err)
	}
	return tx.Commit()
}

// sessionOf loads a session of the principal's device: whether it is
// committed, its stored answer, and when it was last written to. A session
// of another tenant or device is reported as not found.
func sessionOf(ctx context.Context, tx *sql.Tx, p Principal, device, id string) (committed bool, result, touched string, err error) {
	var tenant, dev string
	var res sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT tenant, device, result, coalesce(touched_at, created_at) FROM _tether_sessions WHERE id = ?`, id).
		Scan(&tenant, &dev, &res, &touched)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && (tenant != p.Tenant || dev != device)) {
		return false, "", "", fmt.Errorf("unknown session %q: %w", id, wire.ErrNotFound)
	}
	if err != nil {
		return false, "", "", fmt.Errorf("session %s: %w", id, err)
	}
	return res.Valid, res.String, touched, nil
}

// StageBatch implements Store.
func (s *SQLiteStore) StageBatch(ctx context.Context, p Principal, device, session string, seq int, rows []wire.Row, lim Limits) error {
	lim = lim.withDefaults()
	st := s.byName[rows[0].Table]
	if st == nil {
		return fmt.Errorf("stage batch %d: unknown table %q: %w", seq, rows[0].Table, wire.ErrBadRequest)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("stage batch %d: %w", seq, err)
	}
	defer tx.Rollback()
	committed, _, err := s.openSessionTx(ctx, tx, p, device, session, lim)
	if err != nil {
		return err
	}
	if committed {
		return fmt.Errorf("session %s is already committed: %w", session, wire.ErrConflict)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE _tether_sessions SET touched_at = ? WHERE id = ?`, s.stamp(), session); err != nil {
		return fmt.Errorf("stage batch %d: %w", seq, err)
	}
	// A re-sent batch replaces the first one (G3).
	var old string
	err = tx.QueryRowContext(ctx, `SELECT tbl FROM _tether_batches WHERE session = ? AND seq = ?`, session, seq).Scan(&old)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("stage batch %d: %w", seq, err)
	case s.byName[old] != nil:
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE "_session" = ? AND "_seq" = ?`, s.byName[old].stage), session, seq); err != nil {
			return fmt.Errorf("stage batch %d: replace: %w", seq, err)
		}
	}
	ins := sqlbatch.New(tx, st.stageIn, "", 6+len(st.t.Columns))
	args := make([]any, 0, 6+len(st.t.Columns))
	for _, r := range rows {
		args = append(args[:0], session, seq, r.Base, r.Deleted, r.HLC, changedJSON(&st.t, r), r.ID)
		for _, col := range st.t.Columns[1:] {
			args = append(args, r.Values[col.Name])
		}
		if err := ins.Add(ctx, args...); err != nil {
			return fmt.Errorf("stage batch %d: %w", seq, err)
		}
	}
	if err := ins.Flush(ctx); err != nil {
		return fmt.Errorf("stage batch %d: %w", seq, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO _tether_batches (session, seq, tbl, rows, body) VALUES (?, ?, ?, ?, x'')
		ON CONFLICT (session, seq) DO UPDATE SET tbl = excluded.tbl, rows = excluded.rows`,
		session, seq, rows[0].Table, len(rows))
	if err != nil {
		return fmt.Errorf("stage batch %d: %w", seq, err)
	}
	return tx.Commit()
}

// Commit implements Store.
func (s *SQLiteStore) Commit(ctx context.Context, p Principal, device, session string, resolve Resolver, lim Limits) (wire.Commit, error) {
	lim = lim.withDefaults()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wire.Commit{}, fmt.Errorf("commit session %s: %w", session, err)
	}
	defer tx.Rollback()
	committed, result, err := s.openSessionTx(ctx, tx, p, device, session, lim)
	if err != nil {
		return wire.Commit{}, err
	}
	var c wire.Commit
	if committed { // a re-sent commit gets the first answer (G3)
		if err := json.Unmarshal([]byte(result), &c); err != nil {
			return wire.Commit{}, fmt.Errorf("commit session %s: stored result: %w", session, err)
		}
		return c, nil
	}
	if err := tx.QueryRowContext(ctx, `UPDATE _tether_counter SET version = version + 1 RETURNING version`).Scan(&c.Version); err != nil {
		return wire.Commit{}, fmt.Errorf("commit session %s: next version: %w", session, err)
	}
	ap := &applier{tx: tx, p: p, device: device, session: session, version: c.Version, resolve: resolve, at: s.stamp()}
	for _, st := range s.tables { // parents before children (G4)
		if err := ap.applyTable(ctx, st, &c); err != nil {
			return wire.Commit{}, fmt.Errorf("commit session %s: %w", session, err)
		}
	}
	res, err := json.Marshal(c)
	if err != nil {
		return wire.Commit{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE _tether_sessions SET committed_at = ?, version = ?, result = ? WHERE id = ?`,
		s.stamp(), c.Version, string(res), session); err != nil {
		return wire.Commit{}, fmt.Errorf("commit session %s: %w", session, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM _tether_batches WHERE session = ?`, session); err != nil {
		return wire.Commit{}, fmt.Errorf("commit session %s: %w", session, err)
	}
	if err := tx.Commit(); err != nil {
		return wire.Commit{}, fmt.Errorf("commit session %s: %w", session, err)
	}
	s.events.publish(p.Tenant, wire.Event{Version: c.Version, Device: device})
	return c, nil
}

// Subscribe implements Notifier, within this process.
func (s *SQLiteStore) Subscribe(ctx context.Context, tenant string) (<-chan wire.Event, error) {
	return s.events.subscribe(ctx, tenant), nil
}

// applier applies the staged rows of one session inside its transaction.
type applier struct {
	tx      *sql.Tx
	p       Principal
	device  string
	session string
	version int64
	resolve Resolver
	at      string // server time of the commit, for the audit log
}

func (a *applier) applyTable(ctx context.Context, st *storeTable, c *wire.Commit) error {
	// Rows whose server row moved since the version they were based on,
	// by another session, are conflicts for the resolver. Conflicts are
	// rare; the ids are collected first, then resolved one by one.
	rows, err := a.tx.QueryContext(ctx, fmt.Sprintf(`SELECT s."id" FROM %s AS s JOIN %s AS t ON t."_tenant" = ? AND t."id" = s."id"
		WHERE s."_session" = ? AND t."_version" != s."_base" AND t."_session" != s."_session" ORDER BY s."id"`,
		st.stage, qi(st.t.Name)), a.p.Tenant, a.session)
	if err != nil {
		return err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, id := range ids {
		if err := a.resolveRow(ctx, st, id, c); err != nil {
			return fmt.Errorf("%s %q: %w", st.t.Name, id, err)
		}
	}
	// Everything still staged goes in with one statement, and into the
	// audit log with another.
	res, err := a.tx.ExecContext(ctx, st.merge, a.p.Tenant, a.version, a.p.User, a.device, a.version, a.session)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	c.Applied += int(n)
	_, err = a.tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO _tether_audit (tenant, version, tbl, id, deleted, user, device, session, at)
		SELECT ?, ?, ?, "id", "_deleted", ?, ?, "_session", ? FROM %s WHERE "_session" = ?`, st.stage),
		a.p.Tenant, a.version, st.t.Name, a.p.User, a.device, a.at, a.session)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	_, err = a.tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE "_session" = ?`, st.stage), a.session)
	return err
}

// resolveRow asks the resolver about one conflicting staged row: it drops
// the row from the stage when the server's row wins, and replaces it with
// the merge when there is one.
func (a *applier) resolveRow(ctx context.Context, st *storeTable, id string, c *wire.Commit) error {
	var colvers string
	cur, err := scanRow(&st.t, a.tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT %s, "_colvers" FROM %s WHERE "_tenant" = ? AND "id" = ?`,
		st.selects, qi(st.t.Name)), a.p.Tenant, id).Scan, &colvers)
	if err != nil {
		return err
	}
	r, err := scanStaged(&st.t, a.tx.QueryRowContext(ctx, st.staged, a.session, id).Scan)
	if err != nil {
		return err
	}
	cf, merged, err := decide(ctx, a.resolve, &st.t, cur, r, colvers, a.version, a.device, a.p.User)
	if err != nil {
		return err
	}
	c.Conflicts = append(c.Conflicts, cf)
	switch {
	case cf.Winner == wire.WinnerServer:
		_, err = a.tx.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %s WHERE "_session" = ? AND "id" = ?`, st.stage), a.session, id)
	case merged != nil:
		args := []any{merged.Deleted, merged.HLC, changedJSON(&st.t, *merged)}
		sets := []string{`"_deleted" = ?`, `"_hlc" = ?`, `"_changed" = ?`}
		for _, col := range st.t.Columns[1:] {
			sets = append(sets, qi(col.Name)+" = ?")
			args = append(args, merged.Values[col.Name])
		}
		_, err = a.tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET %s WHERE "_session" = ? AND "id" = ?`, st.stage, strings.Join(sets, ", ")),
			append(args, a.session, id)...)
	}
	return err
}

// Changes implements Store. It reads every table in one read transaction,
// so a page is a consistent snapshot, and merges them in commit order.
func (s *SQLiteStore) Changes(ctx context.Context, p Principal, after Cursor, limit int) ([]wire.Row, Cursor, bool, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, after, false, fmt.Errorf("changes: %w", err)
	}
	defer tx.Rollback()
	var all []changed
	for _, st := range s.tables {
		where, args := afterClause(st.idx, after)
		q := fmt.Sprintf(`SELECT %s FROM %s WHERE "_tenant" = ? AND %s ORDER BY "_version", "id" LIMIT ?`, st.selects, qi(st.t.Name), where)
		rows, err := tx.QueryContext(ctx, q, append(append([]any{p.Tenant}, args...), limit+1)...)
		if err != nil {
			return nil, after, false, fmt.Errorf("changes %s: %w", st.t.Name, err)
		}
		for rows.Next() {
			r, err := scanRow(&st.t, rows.Scan)
			if err != nil {
				rows.Close()
				return nil, after, false, err
			}
			all = append(all, changed{Cursor{Version: r.Version, Table: st.idx, ID: r.ID}, r})
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, after, false, fmt.Errorf("changes %s: %w", st.t.Name, err)
		}
	}
	out, next, more := page(all, after, limit)
	return out, next, more, nil
}

// afterClause returns the condition selecting the rows of table idx that
// come after cursor c in commit order.
func afterClause(idx int, c Cursor) (string, []any) {
	switch {
	case idx < c.Table:
		return `"_version" > ?`, []any{c.Version}
	case idx == c.Table:
		// A row value, so that SQLite seeks the index to the cursor
		// instead of scanning every row of the cursor's version.
		return `("_version", "id") > (?, ?)`, []any{c.Version, c.ID}
	default:
		return `"_version" >= ?`, []any{c.Version}
	}
}

// DB returns a read-only handle on the server database, for the plain SQL
// queries of a back office. Synced tables carry the entity columns plus
// _tenant, _version, _deleted, _hlc, _modified_by, _origin and _session.
func (s *SQLiteStore) DB() *sql.DB { return s.r }

// Audit implements Auditor. The log is the _tether_audit table.
func (s *SQLiteStore) Audit(ctx context.Context, tenant string, after int64, limit int) ([]AuditEntry, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT version, tbl, id, deleted, user, device, session, at FROM _tether_audit
		WHERE tenant = ? AND version > ? ORDER BY version, tbl, id LIMIT ?`, tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at string
		if err := rows.Scan(&e.Version, &e.Table, &e.ID, &e.Deleted, &e.User, &e.Device, &e.Session, &at); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if e.At, err = entity.ParseTime(at); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Digest implements Digester.
func (s *SQLiteStore) Digest(ctx context.Context, p Principal, table string) (wire.TableDigest, error) {
	st := s.byName[table]
	if st == nil {
		return wire.TableDigest{}, fmt.Errorf("digest: unknown table %q: %w", table, wire.ErrBadRequest)
	}
	cols := make([]string, len(st.t.Columns))
	for i, c := range st.t.Columns {
		cols[i] = qi(c.Name)
	}
	rows, err := s.r.QueryContext(ctx, fmt.Sprintf(`SELECT "_deleted", %s FROM %s WHERE "_tenant" = ? ORDER BY "id"`,
		strings.Join(cols, ", "), qi(table)), p.Tenant)
	if err != nil {
		return wire.TableDigest{}, fmt.Errorf("digest %s: %w", table, err)
	}
	defer rows.Close()
	d, err := entity.DigestRows(&st.t, rows.Next, rows.Scan)
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return wire.TableDigest{}, fmt.Errorf("digest %s: %w", table, err)
	}
	return wire.TableDigest{Table: table, Rows: d.Rows(), SHA256: d.Sum()}, nil
}
