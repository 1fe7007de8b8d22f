package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Capturing is a dialect that spells the triggers capturing writes made
// in a synced table outside the store (server.Options.CaptureExternalWrites).
//
// A trigger tells the store's own writes from others by what the store
// always sets and plain SQL leaves alone: every row the store writes gets
// a new "_version", while an INSERT that names only the app's columns
// leaves it at its default (0) and an UPDATE leaves it unchanged. For
// such a write, the trigger sets the row's version to 0 (so that no pull
// sees it before it is captured: a pull reads the versions after its
// cursor), records the row in _tether_captured (its
// tenant, table, id, whether it was deleted, and a clock stamp of the
// database's clock at the write, of device server.ExternalDevice); for a
// DELETE of a live row it also keeps the row's last values in the
// table's staging table, under session ” (CaptureTable.StageOld), for
// its tombstone. The store turns what was recorded into commits
// (Store.Capture).
//
// A trigger only inserts (or replaces one row by its key; on PostgreSQL
// it deletes the values of its own row): it never deletes or reads other
// rows, which on MySQL's repeatable read would lock
// gaps of the staging table and hold up every device staging a batch
// until the back office's transaction ends. Last values kept by a DELETE
// that a later INSERT made stale are dropped by the capture.
type Capturing interface {
	// CaptureTriggers returns the statements that install the capture
	// triggers of t, replacing any there are.
	CaptureTriggers(t CaptureTable) []string
	// DropCaptureTriggers returns the statements that drop them, if they
	// exist.
	DropCaptureTriggers(t CaptureTable) []string
	// SkipLocked is appended to a SELECT that must lock the rows it reads
	// until the transaction ends, passing over those another transaction
	// holds ("" where writers are serialized anyway).
	SkipLocked() string
}

// CaptureTable is a synced table, as a Capturing dialect spells its
// triggers.
type CaptureTable struct {
	// Table is the unquoted synced table name.
	Table string
	// Stage is the unquoted name of its staging table.
	Stage string
	// Columns are its app's columns, unquoted, id first.
	Columns []string
	// Trigger is the unquoted name of its trigger (or the prefix of
	// their names, where each event has its own).
	Trigger string
	// every is the "_changed" of a row that changed every column.
	every string
}

// Literal quotes s as an SQL string literal.
func Literal(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// Record is the statement a trigger runs for a write of row (NEW or
// OLD) spelled with insert, the dialect's INSERT that replaces a
// recorded write of the same row ("INSERT OR REPLACE INTO" or "REPLACE
// INTO"; or "INSERT INTO" followed by upsert); deleted is a boolean
// literal and stamp an expression of the write's clock stamp.
func (c CaptureTable) Record(insert, upsert, row, deleted, stamp string) string {
	return fmt.Sprintf(`%s _tether_captured (tenant, tbl, id, deleted, hlc) VALUES (%s."_tenant", %s, %s."id", %s, %s)%s`,
		insert, row, Literal(c.Table), row, deleted, stamp, upsert)
}

// StageOld is the statement that keeps the last values of the deleted
// row OLD in the staging table, as a staged tombstone of session ”
// stamped stamp, replacing the values an earlier DELETE of the same id
// kept: insert is the dialect's INSERT ("INSERT OR REPLACE INTO" or
// "INSERT INTO"), and upsert, if not nil, spells the clause that follows
// the VALUES to replace the row of the same key, given the columns to
// set (the key is "_tenant", "_session", "id").
func (c CaptureTable) StageOld(insert string, upsert func(cols []string) string, stamp string) string {
	vals := make([]string, len(c.Columns))
	for i, col := range c.Columns {
		vals[i] = "OLD." + sqlident.Quote(col)
	}
	q := fmt.Sprintf(`%s %s ("_tenant", "_session", "_seq", "_base", "_deleted", "_hlc", "_changed", "_present", "_exact", %s)
		VALUES (OLD."_tenant", '', 0, 0, TRUE, %s, %s, '', 0, %s)`,
		insert, sqlident.Quote(c.Stage), ColumnList(c.Columns), stamp, Literal(c.every), strings.Join(vals, ", "))
	if upsert != nil {
		set := []string{"_seq", "_base", "_deleted", "_hlc", "_changed", "_present", "_exact"}
		set = append(set, c.Columns[1:]...) // not id, of the key
		for i, col := range set {
			set[i] = sqlident.Quote(col)
		}
		q += upsert(set)
	}
	return q
}

// Unstage is the statement that drops the last values kept for row's id
// by an earlier DELETE, for a dialect whose staging tables have no key
// to replace them by.
func (c CaptureTable) Unstage(row string) string {
	return fmt.Sprintf(`DELETE FROM %s WHERE "_tenant" = %s."_tenant" AND "_session" = '' AND "id" = %s."id"`,
		sqlident.Quote(c.Stage), row, row)
}

// StampSuffix is what follows the milliseconds in a captured write's
// clock stamp: a counter of 0 and server.ExternalDevice.
const StampSuffix = ".000000." + server.ExternalDevice

// captureTable describes t for a Capturing dialect.
func captureTable(t *Table) CaptureTable {
	cols := make([]string, len(t.schema.Columns))
	for i, c := range t.schema.Columns {
		cols[i] = c.Name
	}
	return CaptureTable{Table: t.schema.Name, Stage: t.StageName, Columns: cols, Trigger: "_tether_capture_" + t.schema.Name, every: t.every}
}

// CaptureExternal implements server.Capturer: with on, it installs the
// capture triggers on every synced table, replacing those there are;
// without, it captures what they recorded, then drops them (and forgets
// what a transaction still under way holds). Tables gone from the schema
// keep their triggers.
func (s *Store) CaptureExternal(ctx context.Context, on bool) error {
	cd, ok := s.d.(Capturing)
	if !ok {
		if on {
			return fmt.Errorf("capture external writes: the %s store cannot", s.d.Name())
		}
		return nil
	}
	if !on {
		// What the triggers recorded reaches devices before they go.
		tenants, err := func() ([]string, error) {
			tx, err := s.r.BeginTx(ctx, s.d.ReadOptions())
			if err != nil {
				return nil, err
			}
			defer tx.Rollback()
			return s.strings(ctx, tx, `SELECT DISTINCT tenant FROM _tether_captured`)
		}()
		if err != nil {
			return fmt.Errorf("capture external writes: %w", err)
		}
		for _, tenant := range tenants {
			if err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
				_, _, err := s.captureNow(ctx, tx, tenant)
				return err
			}); err != nil {
				return fmt.Errorf("capture external writes of tenant %s before capture stops: %w", tenant, err)
			}
		}
	}
	unlock, err := s.d.LockMigrations(ctx, s.w)
	if err != nil {
		return fmt.Errorf("capture external writes: lock: %w", err)
	}
	defer unlock()
	err = s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		for _, t := range s.tables {
			ct := captureTable(t)
			stmts := cd.DropCaptureTriggers(ct)
			if on {
				stmts = append(stmts, cd.CaptureTriggers(ct)...)
			} else {
				stmts = append(stmts, `DELETE FROM `+t.Stage+` WHERE "_session" = ''`)
			}
			for _, q := range stmts {
				if _, err := tx.ExecContext(ctx, q); err != nil {
					return fmt.Errorf("%s: %w", t.schema.Name, err)
				}
			}
		}
		if !on {
			_, err := tx.ExecContext(ctx, `DELETE FROM _tether_captured`)
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("capture external writes: %w", err)
	}
	s.capturing.Store(on)
	return nil
}

// captureTenants is the most tenants one Capture call captures the
// writes of.
const captureTenants = 100

// Capture implements server.Capturer: it commits the external writes
// recorded so far, one commit per tenant (of up to captureTenants
// tenants), and returns how many commits it made. A tenant whose capture
// the database keeps aborting for deadlocks (with a back office's
// transactions) is left for the next call.
func (s *Store) Capture(ctx context.Context) (int, error) {
	if !s.capturing.Load() {
		return 0, nil
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT DISTINCT tenant FROM _tether_captured ORDER BY tenant LIMIT ?`), captureTenants)
	if err != nil {
		return 0, fmt.Errorf("capture: %w", err)
	}
	var tenants []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return 0, fmt.Errorf("capture: %w", err)
		}
		tenants = append(tenants, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("capture: %w", err)
	}
	n := 0
	for _, tenant := range tenants {
		var c wire.Commit
		var ok bool
		err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
			var err error
			c, ok, err = s.captureTx(ctx, tx, tenant)
			return err
		})
		if err != nil && s.d.Retryable(err) {
			continue // deadlocked with a back office's writes, again: next time
		}
		if err != nil {
			return n, fmt.Errorf("capture tenant %s: %w", tenant, err)
		}
		if ok {
			n++
			s.committed(externalPrincipal(tenant), server.ExternalDevice, c, true)
		}
	}
	return n, nil
}

// externalPrincipal is who the commits of captured writes are made by.
func externalPrincipal(tenant string) server.Principal {
	return server.Principal{Tenant: tenant, User: server.ExternalUser}
}

// capturedKey marks a context whose transaction captured already.
type capturedKey struct{}

// captureOnce returns ctx for attempt *tries+1 of a transaction that
// commits a device's session: a transaction run again (a deadlock, a
// serialization failure, which the capture under way at its start makes
// likelier) does not capture first, so that a busy back office cannot
// fail a device's commit; the periodic capture, or the next commit,
// takes those writes.
func captureOnce(ctx context.Context, tries *int) context.Context {
	if *tries++; *tries > 1 {
		return context.WithValue(ctx, capturedKey{}, true)
	}
	return ctx
}

// captureFirst captures tenant's external writes in tx (see captureTx),
// at the start of a transaction that commits a device's session: it
// locks the tenant's commits before the session's rows are staged, so
// that the transaction takes its locks in the order every capture does
// (the tenant's commits, then rows), and returns the context for the
// commit, which then does not capture again.
func (s *Store) captureFirst(ctx context.Context, tx *sql.Tx, tenant string) (context.Context, error) {
	if _, _, err := s.captureTx(ctx, tx, tenant); err != nil {
		return ctx, fmt.Errorf("capture external writes: %w", err)
	}
	return context.WithValue(ctx, capturedKey{}, true), nil
}

// captureTx commits, in tx, the external writes of tenant recorded so
// far, as one commit of server.ExternalDevice through the commit path of
// a device's session (conflicts, reference rules, scope keys, audit log),
// and reports whether there were any. Every commit of the tenant runs it
// first, so that a device's session meets the external writes made
// before it as conflicts.
func (s *Store) captureTx(ctx context.Context, tx *sql.Tx, tenant string) (wire.Commit, bool, error) {
	if !s.capturing.Load() {
		return wire.Commit{}, false, nil
	}
	return s.captureNow(ctx, tx, tenant)
}

// captureNow is captureTx, whether or not capture is on.
func (s *Store) captureNow(ctx context.Context, tx *sql.Tx, tenant string) (wire.Commit, bool, error) {
	var c wire.Commit
	// The tenant's commits first, then the rows: the order a commit takes
	// its locks in.
	if _, err := s.strings(ctx, tx, `SELECT tenant FROM _tether_tenants WHERE tenant = ?`+s.d.ForUpdate(), tenant); err != nil {
		return c, false, err
	}
	tables, err := s.strings(ctx, tx, `SELECT DISTINCT tbl FROM _tether_captured WHERE tenant = ?`, tenant)
	if err != nil || len(tables) == 0 {
		return c, false, err
	}
	// A back office's transaction under way holds some recorded rows (or
	// their records): nothing of the tenant is captured until it ends, so
	// that no part of a transaction reaches devices without the rest, and
	// no statement of this one waits for it.
	if busy, err := s.captureBusy(ctx, tx, tenant, tables); err != nil || busy {
		return c, false, err
	}
	session := uuid.NewString()
	staged := 0
	for _, name := range tables {
		t := s.byName[name]
		if t == nil { // a table gone from the schema
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_captured WHERE tenant = ? AND tbl = ?`), tenant, name); err != nil {
				return c, false, err
			}
			continue
		}
		n, err := s.stageCaptured(ctx, tx, t, tenant, session)
		if err != nil {
			return c, false, fmt.Errorf("%s: %w", name, err)
		}
		staged += n
	}
	if staged == 0 {
		return c, false, nil
	}
	p := externalPrincipal(tenant)
	if err := s.commitTx(server.Trusted(ctx), tx, p, server.ExternalDevice, session, keepServer, nil, nil, &c); err != nil {
		return c, false, err
	}
	return c, true, nil
}

// stageCaptured stages, as session, the rows of t that tenant's recorded
// external writes name: a live row as it is now, based on its own
// version (so it is no conflict), and a deleted one as the tombstone its
// DELETE kept, each with the stamp of its write; and drops the records
// of what it staged. It returns how many rows it staged.
//
// Its statements name rows by id, so that it waits only for the rows it
// captures: a back office's transaction locks a row, then its record.
func (s *Store) stageCaptured(ctx context.Context, tx *sql.Tx, t *Table, tenant, session string) (int, error) {
	recorded := func(deleted bool) ([]string, error) {
		return s.strings(ctx, tx, `SELECT id FROM _tether_captured WHERE tenant = ? AND tbl = ? AND deleted = ? ORDER BY id`, tenant, t.schema.Name, deleted)
	}
	live, err := recorded(false)
	if err != nil {
		return 0, err
	}
	var locked []string
	for chunk := range slices.Chunk(live, captureChunk) {
		// Locked, no external write changes these rows until the commit
		// ends, so what is staged is their latest write. A row a back
		// office's transaction holds is captured next time: waiting for
		// it would deadlock with a transaction that locks rows in another
		// order.
		ids, err := s.strings(ctx, tx, `SELECT "id" FROM `+t.Name+` WHERE "_tenant" = ? AND "id" IN (`+marks(len(chunk))+`) ORDER BY "id"`+s.d.(Capturing).SkipLocked(),
			append([]any{tenant}, anys(chunk)...)...)
		if err != nil {
			return 0, fmt.Errorf("lock: %w", err)
		}
		locked = append(locked, ids...)
	}
	var cols []string
	for _, c := range t.cols {
		cols = append(cols, `t.`+c)
	}
	for chunk := range slices.Chunk(locked, captureChunk) {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO `+t.Stage+` ("_tenant", "_session", "_seq", "_base", "_deleted", "_hlc", "_changed", "_present", "_exact", `+t.columnList()+`)
			SELECT t."_tenant", ?, 0, t."_version", t."_deleted", c.hlc, ?, '', 0, `+strings.Join(cols, ", ")+`
			FROM _tether_captured AS c JOIN `+t.Name+` AS t ON t."_tenant" = c.tenant AND t."id" = c.id
			WHERE c.tenant = ? AND c.tbl = ? AND c.id IN (`+marks(len(chunk))+`)`),
			append([]any{session, t.every, tenant, t.schema.Name}, anys(chunk)...)...); err != nil {
			return 0, fmt.Errorf("stage: %w", err)
		}
	}
	// Last values a DELETE kept for a row written again since are stale.
	for chunk := range slices.Chunk(live, captureChunk) {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = '' AND "id" IN (`+marks(len(chunk))+`)`),
			append([]any{tenant}, anys(chunk)...)...); err != nil {
			return 0, fmt.Errorf("drop stale tombstones: %w", err)
		}
	}
	gone, err := recorded(true)
	if err != nil {
		return 0, err
	}
	for chunk := range slices.Chunk(gone, captureChunk) {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE `+t.Stage+` SET "_session" = ?,
			"_hlc" = (SELECT c.hlc FROM _tether_captured AS c WHERE c.tenant = ? AND c.tbl = ? AND c.id = `+t.Stage+`."id")
			WHERE "_tenant" = ? AND "_session" = '' AND "id" IN (`+marks(len(chunk))+`)`),
			append([]any{session, tenant, t.schema.Name, tenant}, anys(chunk)...)...); err != nil {
			return 0, fmt.Errorf("stage tombstones: %w", err)
		}
	}
	// The records of what was staged go, unless written again since (with
	// a later stamp); so do those of live rows that are not there.
	for chunk := range slices.Chunk(append(live, gone...), captureChunk) {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_captured WHERE tenant = ? AND tbl = ? AND id IN (`+marks(len(chunk))+`)
			AND (EXISTS (SELECT 1 FROM `+t.Stage+` AS s WHERE s."_tenant" = ? AND s."_session" = ? AND s."id" = _tether_captured.id AND s."_hlc" = _tether_captured.hlc)
				OR (deleted = ? AND NOT EXISTS (SELECT 1 FROM `+t.Name+` AS t WHERE t."_tenant" = ? AND t."id" = _tether_captured.id)))`),
			append(append([]any{tenant, t.schema.Name}, anys(chunk)...), tenant, session, false, tenant)...); err != nil {
			return 0, fmt.Errorf("drop records: %w", err)
		}
	}
	var n int
	err = tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ?`), tenant, session).Scan(&n)
	return n, err
}

// captureBusy locks the tenant's records of external writes, and the live
// rows they name, in tables, passing over what another transaction holds,
// and reports whether it passed over any.
func (s *Store) captureBusy(ctx context.Context, tx *sql.Tx, tenant string, tables []string) (bool, error) {
	skip := s.d.(Capturing).SkipLocked()
	if skip == "" {
		return false, nil // one writer at a time: nothing is held
	}
	for _, name := range tables {
		t := s.byName[name]
		if t == nil {
			continue
		}
		all, err := s.strings(ctx, tx, `SELECT id FROM _tether_captured WHERE tenant = ? AND tbl = ? ORDER BY id`, tenant, name)
		if err != nil {
			return false, err
		}
		mine, err := s.strings(ctx, tx, `SELECT id FROM _tether_captured WHERE tenant = ? AND tbl = ? ORDER BY id`+skip, tenant, name)
		if err != nil {
			return false, err
		}
		if len(mine) != len(all) {
			return true, nil
		}
		for chunk := range slices.Chunk(all, captureChunk) {
			args := append([]any{tenant}, anys(chunk)...)
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM `+t.Name+` WHERE "_tenant" = ? AND "id" IN (`+marks(len(chunk))+`)`), args...).Scan(&n); err != nil {
				return false, err
			}
			held, err := s.strings(ctx, tx, `SELECT "id" FROM `+t.Name+` WHERE "_tenant" = ? AND "id" IN (`+marks(len(chunk))+`) ORDER BY "id"`+skip, args...)
			if err != nil {
				return false, err
			}
			if len(held) != n {
				return true, nil
			}
		}
	}
	return false, nil
}

// marks returns n placeholders, joined with commas.
func marks(n int) string { return strings.Repeat("?, ", n-1) + "?" }

// anys converts ids to statement arguments.
func anys(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// captureChunk is the most ids one statement of stageCaptured names.
const captureChunk = 500

// keepServer is the resolver of a captured write's commit. A captured
// write is based on its row's own version, so it meets no conflict: one
// fails the capture.
func keepServer(context.Context, server.Conflict) (server.Resolution, server.Strategy, error) {
	return server.Resolution{}, "", errCaptureConflict
}

// errCaptureConflict is a captured write that met a conflict.
var errCaptureConflict = errors.New("a captured write met a conflict")
