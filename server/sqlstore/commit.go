package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Commit implements server.Store.
func (s *Store) Commit(ctx context.Context, p server.Principal, device, session string, resolve server.Resolver, lim server.Limits, settle *server.LastBatch) (wire.Commit, error) {
	lim = lim.WithDefaults()
	var c wire.Commit
	fresh := false
	tries := 0
	start := time.Now()
	s.analyzeStaged(ctx, p.Tenant, session)
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		c, fresh = wire.Commit{}, false // a retried transaction starts over
		ctx := captureOnce(ctx, &tries)
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
		return s.commitTx(ctx, tx, p, device, session, resolve, nil, nil, &c)
	})
	if err != nil {
		if errors.Is(err, wire.ErrNotFound) {
			return wire.Commit{}, err
		}
		return wire.Commit{}, fmt.Errorf("commit session %s: %w", session, err)
	}
	s.committed(p, device, c, fresh)
	if fresh {
		observeCommit(ctx, p, device, c, start)
	}
	return c, nil
}

// commitTx commits an open session in tx into c. single, when not nil, is
// the table of the session's single batch, staged in tx without a record
// in _tether_batches: a session that one request opens, fills and commits
// (see Push), which has no other batch to check or forget.
func (s *Store) commitTx(ctx context.Context, tx *sql.Tx, p server.Principal, device, session string, resolve server.Resolver, last *server.LastBatch, single *Table, c *wire.Commit) error {
	if single == nil {
		if err := s.contiguous(ctx, tx, p.Tenant, session, last); err != nil { // see runs.go
			return err
		}
	}
	if device != server.ExternalDevice && ctx.Value(capturedKey{}) == nil { // external writes made before meet the session as conflicts
		if _, err := s.captureFirst(ctx, tx, p.Tenant); err != nil {
			return err
		}
	}
	var err error
	c.ModifiedBy = p.User // as the rows record it (see applier)
	if c.Version, err = s.d.NextVersion(ctx, tx, p.Tenant); err != nil {
		return fmt.Errorf("next version: %w", err)
	}
	ap := &applier{s: s, tx: tx, p: p, device: device, session: session, resolve: resolve, at: s.d.Time(s.now())}
	staged := map[*Table]bool{single: true}
	if single == nil {
		if staged, err = s.stagedTables(ctx, tx, p.Tenant, device, session); err != nil {
			return err
		}
	}
	for _, t := range s.tables { // parents before children (G4)
		if !staged[t] { // nothing of t to apply: its steps would find no row
			continue
		}
		if err := ap.guard(ctx, t, c); err != nil {
			return fmt.Errorf("%s: %w", t.schema.Name, err)
		}
		if err := ap.applyTable(ctx, t, c); err != nil {
			return fmt.Errorf("%s: %w", t.schema.Name, err)
		}
		if err := ap.rekeyVersion(ctx, t, c.Version); err != nil {
			return fmt.Errorf("%s: %w", t.schema.Name, err)
		}
	}
	if err := ap.references(ctx, c); err != nil { // G12
		return err
	}
	for _, t := range s.tables { // the rows the reference rules rewrote
		if st := s.scope.of(t); st != nil && len(ap.touched[t]) > 0 {
			if err := ap.rekey(ctx, st, slices.Sorted(maps.Keys(ap.touched[t])), c.Version); err != nil {
				return fmt.Errorf("%s: %w", t.schema.Name, err)
			}
		}
	}
	res, err := json.Marshal(storedCommit{Commit: *c, Last: last})
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE _tether_sessions SET committed_at = ?, version = ?, result = ? WHERE tenant = ? AND id = ?`),
		s.d.Time(s.now()), c.Version, string(res), p.Tenant, session); err != nil {
		return err
	}
	if single == nil {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM _tether_batches WHERE tenant = ? AND session = ?`), p.Tenant, session); err != nil {
			return err
		}
	}
	if cross, ok := s.d.(CrossProcess); ok { // delivered to every process when the commit is
		return cross.Notify(ctx, tx, Notice{Tenant: p.Tenant, Version: c.Version, Device: device})
	}
	return nil
}

// analyzeStaged has a StageAnalyzer dialect refresh the statistics of the
// tables the session staged AnalyzeRows rows or more of, before the
// transaction of its commit begins: each ANALYZE in a short transaction of
// its own, which holds its lock only as long as it runs. A failure leaves
// the statistics as they were, and the commit goes on: it is logged.
func (s *Store) analyzeStaged(ctx context.Context, tenant, session string) {
	an, ok := s.d.(StageAnalyzer)
	if !ok {
		return
	}
	counts := map[string]int64{}
	err := func() error {
		rows, err := s.w.QueryContext(ctx, s.q(`SELECT tbl, SUM("rows") FROM _tether_batches WHERE tenant = ? AND session = ? GROUP BY tbl`), tenant, session)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var n int64
			if err := rows.Scan(&name, &n); err != nil {
				return err
			}
			counts[name] = n
		}
		return rows.Err()
	}()
	for _, t := range s.tables { // in one order, whatever the query's
		if err != nil || counts[t.schema.Name] < AnalyzeRows {
			continue
		}
		err = an.AnalyzeStage(ctx, s.w, t)
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("commit: refresh the planner's statistics", "session", session, "err", err)
	}
}

// stagedTables returns the tables a session staged rows of, as its
// batches record them; a session of captured external writes, which
// records none, may hold rows of every table.
func (s *Store) stagedTables(ctx context.Context, tx *sql.Tx, tenant, device, session string) (map[*Table]bool, error) {
	out := map[*Table]bool{}
	if device == server.ExternalDevice {
		for _, t := range s.tables {
			out[t] = true
		}
		return out, nil
	}
	names, err := s.strings(ctx, tx, `SELECT DISTINCT tbl FROM _tether_batches WHERE tenant = ? AND session = ?`, tenant, session)
	if err != nil {
		return nil, fmt.Errorf("staged tables: %w", err)
	}
	for _, name := range names {
		if t := s.byName[name]; t != nil {
			out[t] = true
		}
	}
	return out, nil
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

	mine    []string                   // the principal's scope keys, once read
	touched map[*Table]map[string]bool // the rows the reference rules rewrote
}

func (a *applier) applyTable(ctx context.Context, t *Table, c *wire.Commit) error {
	s := a.s
	latest := s.d.Latest(t)
	deltas, err := a.takeIncrements(ctx, t, c.Version) // before a conflict drops a staged row
	if err != nil {
		return err
	}
	// Rows whose server row moved since the version they were based on,
	// by another session, are conflicts for the resolver. Conflicts are
	// rare; the ids are collected first, then resolved one by one.
	ids, err := s.strings(ctx, a.tx, `SELECT s."id" FROM (`+latest+`) AS s JOIN `+t.Name+` AS t ON t."_tenant" = ? AND t."id" = s."id"
		WHERE t."_version" <> s."_base" AND t."_session" <> s."_session"`+notCounterOnly+` ORDER BY s."id"`, a.p.Tenant, a.session, a.p.Tenant)
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
	if err := a.addIncrements(ctx, t, deltas, c.Version); err != nil {
		return err
	}
	if err := a.counted(ctx, t, deltas, c); err != nil {
		return err
	}
	res, err := a.tx.ExecContext(ctx, s.q(`INSERT INTO _tether_audit (tenant, version, tbl, id, deleted, user_name, device, session, at)
		SELECT ?, ?, ?, "id", "_deleted", ?, ?, "_session", ? FROM (`+latest+`) AS s`),
		a.p.Tenant, c.Version, t.schema.Name, a.p.User, a.device, a.at, a.p.Tenant, a.session)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	n, err := res.RowsAffected() // one audit entry per applied row
	if err != nil {
		return err
	}
	c.Applied += int(n)
	return a.unstage(ctx, t)
}

// resolveRow asks the resolver about one conflicting staged row: it drops
// the row from the stage when the server's row wins, and replaces it with
// the merge when there is one.
func (a *applier) resolveRow(ctx context.Context, t *Table, latest, id string, c *wire.Commit) error {
	s := a.s
	var colvers string
	cur, err := scanRow(&t.schema, a.tx.QueryRowContext(ctx, s.q(`SELECT `+t.selects+`, `+s.d.Text(`"_colvers"`)+` FROM `+t.Name+
		` WHERE "_tenant" = ? AND "id" = ?`), a.p.Tenant, id).Scan, &colvers)
	if err != nil {
		return fmt.Errorf("read server row: %w", err)
	}
	staged, err := scanStaged(&t.schema, a.tx.QueryRowContext(ctx, s.q(`SELECT `+t.columnList()+`, "_base", "_deleted", "_hlc", "_changed", "_present" FROM (`+
		latest+`) AS s WHERE "id" = ?`), a.p.Tenant, a.session, id).Scan)
	if err != nil {
		return err
	}
	cf, merged, err := decide(ctx, a.resolve, &t.schema, cur, staged, colvers, c.Version, a.device, a.p.User)
	if err != nil {
		return err
	}
	c.Conflicts = append(c.Conflicts, cf)
	switch {
	case cf.Winner == wire.WinnerServer:
		_, err = a.tx.ExecContext(ctx, s.q(`DELETE FROM `+t.Stage+` WHERE "_tenant" = ? AND "_session" = ? AND "id" = ?`), a.p.Tenant, a.session, id)
	case merged != nil:
		args := []any{merged.Deleted, merged.HLC, changedJSON(&t.schema, *merged), present(&t.schema, *merged)}
		sets := []string{`"_deleted" = ?`, `"_hlc" = ?`, `"_changed" = ?`, `"_present" = ?`, `"_exact" = 0`}
		for i, col := range t.schema.Columns[1:] {
			sets = append(sets, t.cols[i+1]+" = ?")
			args = append(args, merged.Values[col.Name])
		}
		// Every staged copy of the row: the merge applies the latest.
		_, err = a.tx.ExecContext(ctx, s.q(`UPDATE `+t.Stage+` SET `+strings.Join(sets, ", ")+` WHERE "_tenant" = ? AND "_session" = ? AND "id" = ?`),
			append(args, a.p.Tenant, a.session, id)...)
	}
	return err
}

// merge is the statement that applies the rows of Latest to t: each row is
// inserted, or updates the row it replaces, writing only the columns it
// holds (present): the others keep their values, or take their defaults in
// a new row. Its parameters are tenant, version, user, device, version,
// tenant, session, tenant.
func (s *Store) merge(t *Table) string {
	if q, ok := s.merges.Load(t.idx); ok {
		return q.(string)
	}
	vals := []string{`s."id"`}
	for i, c := range t.schema.Columns[1:] {
		col := t.cols[i+1]
		vals = append(vals, fmt.Sprintf(`CASE WHEN s."_present" = '' OR substr(s."_present", %d, 1) = '1' THEN s.%s WHEN t."id" IS NULL THEN %s ELSE t.%s END`,
			i+1, col, c.Default(), col))
	}
	q := fmt.Sprintf(`INSERT INTO %s ("_tenant", %s, %s, "_colvers")
		SELECT ?, %s, ?, s."_deleted", CASE WHEN s."_changed" = `+counterOnly+` AND NOT s."_deleted" AND t."id" IS NOT NULL THEN t."_hlc" ELSE s."_hlc" END, ?, ?, s."_session", '', '', s."_exact", %s
		FROM (%s) AS s LEFT JOIN %s AS t ON t."_tenant" = ? AND t."id" = s."id" WHERE 1 = 1 ORDER BY s."id"
		%s`,
		// A row that changed every column (a new one, the common case)
		// takes the column versions computed once for the commit.
		t.Name, t.columnList(), strings.Join(merged, ", "), strings.Join(vals, ", "),
		`CASE WHEN s."_changed" = ? THEN `+s.d.JSON("?")+` ELSE `+s.d.ColumnVersions(`s."_changed"`)+` END`,
		s.d.Latest(t), t.Name, s.d.Upsert(t))
	s.merges.Store(t.idx, q)
	return q
}
