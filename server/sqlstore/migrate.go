package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are the steps of the bookkeeping tables' layout, in order:
// step n is migrations[n-1]. A database records the steps it has applied
// in _tether_migrations, in the transaction that applies them (on MySQL,
// DDL commits on its own: the steps are written to be run again safely,
// IF NOT EXISTS). Step 1 creates the tables as bookkeeping() describes
// them now, so a fresh database starts at the current layout; a change of
// the layout edits bookkeeping() and appends a step that brings older
// databases there and does nothing on a fresh one (for tables, columns and
// indexes added: m.ensure of each changed table). An applied step never
// changes.
var migrations = []func(ctx context.Context, m *migrator) error{
	// 1: the layout of the first release.
	func(ctx context.Context, m *migrator) error {
		for _, t := range bookkeeping() {
			if err := m.exec(ctx, m.d.CreateTable(t)...); err != nil {
				return fmt.Errorf("create %s: %w", t.Name, err)
			}
		}
		return nil
	},
	// 2: _tether_devices.revoked (SetDeviceRevoked).
	func(ctx context.Context, m *migrator) error {
		return m.ensure(ctx, bookkeepingTable("_tether_devices"))
	},
}

// bookkeepingTable returns the table of bookkeeping() named name, as it
// is now.
func bookkeepingTable(name string) TableDef {
	for _, t := range bookkeeping() {
		if t.Name == name {
			return t
		}
	}
	panic("sqlstore: no bookkeeping table " + name)
}

// migrator applies the layout in one transaction.
type migrator struct {
	s  *Store
	d  Dialect
	tx *sql.Tx
}

// migrate brings the database's layout up to date in one transaction,
// under the dialect's migration lock.
func (s *Store) migrate(ctx context.Context) error {
	unlock, err := s.d.LockMigrations(ctx, s.w)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer unlock()
	return s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error { return s.migrateTx(ctx, tx) })
}

// migrateTx brings the bookkeeping tables up to the last step of
// migrations, then creates the synced tables and their staging tables,
// adding the tables, columns and indexes the app's schema gained (G11).
func (s *Store) migrateTx(ctx context.Context, tx *sql.Tx) error {
	m := &migrator{s: s, d: s.d, tx: tx}
	if err := m.steps(ctx); err != nil {
		return err
	}
	for _, t := range s.tables {
		for _, def := range []TableDef{syncedDef(t), stageDef(t)} {
			if err := m.ensure(ctx, def); err != nil {
				return fmt.Errorf("table %s: %w", def.Name, err)
			}
		}
	}
	return nil
}

// steps applies the steps the database lacks, recording each.
func (m *migrator) steps(ctx context.Context) error {
	if err := m.ensure(ctx, migrationsTable); err != nil {
		return fmt.Errorf("create %s: %w", migrationsTable.Name, err)
	}
	var done int
	if err := m.tx.QueryRowContext(ctx, `SELECT coalesce(max(step), 0) FROM _tether_migrations`).Scan(&done); err != nil {
		return fmt.Errorf("read applied steps: %w", err)
	}
	if done > len(migrations) {
		return fmt.Errorf("the database is at layout step %d; this version of tether knows steps up to %d", done, len(migrations))
	}
	for n := done + 1; n <= len(migrations); n++ {
		if err := migrations[n-1](ctx, m); err != nil {
			return fmt.Errorf("step %d: %w", n, err)
		}
		if _, err := m.tx.ExecContext(ctx, m.s.q(`INSERT INTO _tether_migrations (step, at) VALUES (?, ?)`), n, m.d.Time(m.s.now())); err != nil {
			return fmt.Errorf("record step %d: %w", n, err)
		}
	}
	return nil
}

// ensure creates table t, or adds the columns and indexes it lacks.
func (m *migrator) ensure(ctx context.Context, t TableDef) error {
	have, err := m.d.Columns(ctx, m.tx, t.Name)
	if err != nil {
		return err
	}
	if len(have) == 0 {
		return m.exec(ctx, m.d.CreateTable(t)...)
	}
	for _, c := range t.Columns {
		if !have[c.Name] {
			if err := m.exec(ctx, m.d.AddColumn(t, c)...); err != nil {
				return fmt.Errorf("add column %s: %w", c.Name, err)
			}
		}
	}
	indexes, err := m.d.Indexes(ctx, m.tx, t.Name)
	if err != nil {
		return err
	}
	for _, ix := range t.Indexes {
		if !indexes[ix.Name] {
			if err := m.exec(ctx, CreateIndex(t.Name, ix, false)); err != nil {
				return fmt.Errorf("index %s: %w", ix.Name, err)
			}
		}
	}
	return nil
}

// exec runs statements in the migration's transaction.
func (m *migrator) exec(ctx context.Context, stmts ...string) error {
	for _, q := range stmts {
		if _, err := m.tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// Names runs query, in the database's own placeholders, in tx and returns
// the set of the values of its one text column: the names of a table's
// columns or indexes, for [Dialect.Columns] and [Dialect.Indexes].
func Names(ctx context.Context, tx *sql.Tx, query string, args ...any) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	set := map[string]bool{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		set[v] = true
	}
	return set, rows.Err()
}
