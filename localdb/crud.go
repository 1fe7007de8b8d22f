package localdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
)

// Tx is a write transaction opened by [DB.Update]. It must not be used
// after the function it was given to returns.
type Tx struct {
	db      *DB
	tx      *sql.Tx
	stamped bool
	change  int64 // the change counter, once read; written back at commit
	stored  int64 // the change counter as the transaction last wrote it
}

// Update runs fn in one transaction: every Save and Delete it makes is
// committed together, or none is when fn returns an error.
func (db *DB) Update(ctx context.Context, fn func(tx *Tx) error) error {
	if err := db.checkOpen("Update"); err != nil {
		return err
	}
	sqltx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("localdb: begin: %w", err)
	}
	defer sqltx.Rollback()
	tx := &Tx{db: db, tx: sqltx}
	if err := fn(tx); err != nil {
		return err
	}
	if tx.stamped {
		if err := setState(ctx, sqltx, stateClock, db.clock.last()); err != nil {
			return fmt.Errorf("localdb: %w", err)
		}
	}
	if tx.change != tx.stored {
		if _, err := sqltx.ExecContext(ctx, `UPDATE _tether_ctl SET change = ?`, tx.change); err != nil {
			return fmt.Errorf("localdb: store change counter: %w", err)
		}
	}
	if err := sqltx.Commit(); err != nil {
		return fmt.Errorf("localdb: commit: %w", err)
	}
	return nil
}

// Save inserts or updates the row of the struct ptr points to and marks it
// dirty. An empty ID is set to a new UUIDv7. On return the struct's Meta
// reflects the stored row. Saving a deleted row brings it back.
func (db *DB) Save(ctx context.Context, ptr any) error {
	if err := db.checkOpen("Save"); err != nil {
		return err
	}
	return db.Update(ctx, func(tx *Tx) error { return tx.Save(ctx, ptr) })
}

// Delete marks the row of the struct ptr points to as deleted. The
// tombstone is kept, dirty, so that the deletion syncs. It returns
// ErrNotFound when the row does not exist or is already deleted.
func (db *DB) Delete(ctx context.Context, ptr any) error {
	if err := db.checkOpen("Delete"); err != nil {
		return err
	}
	return db.Update(ctx, func(tx *Tx) error { return tx.Delete(ctx, ptr) })
}

// Get loads the row with the given id into the struct ptr points to. It
// returns ErrNotFound when the row does not exist or is deleted.
func (db *DB) Get(ctx context.Context, ptr any, id string) error {
	if err := db.checkOpen("Get"); err != nil {
		return err
	}
	return get(ctx, db.sql, db, ptr, id)
}

// Get is DB.Get inside the transaction.
func (tx *Tx) Get(ctx context.Context, ptr any, id string) error {
	return get(ctx, tx.tx, tx.db, ptr, id)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func get(ctx context.Context, q querier, db *DB, ptr any, id string) error {
	t, err := db.tableOf(ptr)
	if err != nil {
		return err
	}
	row := q.QueryRowContext(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE "id" = ? AND "_deleted" = 0`, t.selectCols, sqlident.Quote(t.name)), id)
	if err := t.scanRow(row, ptr); errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("localdb: get %s %q: %w", t.name, id, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("localdb: get %s %q: %w", t.name, id, err)
	}
	return nil
}

func (db *DB) tableOf(v any) (*table, error) {
	e, err := db.reg.Of(v)
	if err != nil {
		return nil, fmt.Errorf("localdb: %w", err)
	}
	t := db.byName[e.Table.Name]
	if t == nil {
		return nil, fmt.Errorf("localdb: table %s was registered after Open", e.Table.Name)
	}
	return t, nil
}

// nextChange bumps and returns the local change counter. The first bump
// of a transaction is written at once (one statement, for the usual
// transaction of one row); later ones are counted here and stored when it
// commits: nothing else writes the counter meanwhile, since the
// transaction holds the write lock.
func (tx *Tx) nextChange(ctx context.Context) (int64, error) {
	if tx.change == 0 {
		if err := tx.tx.QueryRowContext(ctx, `UPDATE _tether_ctl SET change = change + 1 RETURNING change`).Scan(&tx.change); err != nil {
			return 0, fmt.Errorf("bump change counter: %w", err)
		}
		tx.stored = tx.change
		return tx.change, nil
	}
	tx.change++
	return tx.change, nil
}

func (tx *Tx) stamp() (entity.Meta, string) {
	tx.stamped = true
	s := tx.db.clock.Now()
	return entity.Meta{Dirty: true, ModifiedAt: stampTime(s)}, s
}

// Save is DB.Save inside the transaction.
func (tx *Tx) Save(ctx context.Context, ptr any) error {
	t, err := tx.db.tableOf(ptr)
	if err != nil {
		return err
	}
	id, err := t.ent.ID(ptr)
	if err != nil {
		return fmt.Errorf("localdb: save: %w", err)
	}
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("localdb: save %s: new id: %w", t.name, err)
		}
		id = u.String()
		t.ent.SetID(ptr, id)
	}
	vals, err := t.ent.Values(ptr)
	if err != nil {
		return fmt.Errorf("localdb: save %s %q: %w", t.name, id, err)
	}
	change, err := tx.nextChange(ctx)
	if err != nil {
		return fmt.Errorf("localdb: save %s %q: %w", t.name, id, err)
	}
	m, s := tx.stamp()
	args := append(vals, change, s, entity.FormatTime(m.ModifiedAt))
	if err := tx.tx.QueryRowContext(ctx, t.upsertSave, args...).Scan(&m.Version, &m.ModifiedBy); err != nil {
		return fmt.Errorf("localdb: save %s %q: %w", t.name, id, err)
	}
	meta, _ := t.ent.Meta(ptr)
	*meta = m
	return nil
}

// Delete is DB.Delete inside the transaction.
func (tx *Tx) Delete(ctx context.Context, ptr any) error {
	t, err := tx.db.tableOf(ptr)
	if err != nil {
		return err
	}
	id, err := t.ent.ID(ptr)
	if err != nil {
		return fmt.Errorf("localdb: delete: %w", err)
	}
	change, err := tx.nextChange(ctx)
	if err != nil {
		return fmt.Errorf("localdb: delete %s %q: %w", t.name, id, err)
	}
	m, s := tx.stamp()
	m.Deleted = true
	err = tx.tx.QueryRowContext(ctx, fmt.Sprintf(`UPDATE %s SET "_deleted" = 1, "_dirty" = 1, "_change" = ?, "_hlc" = ?, "_modified_at" = ?
		WHERE "id" = ? AND "_deleted" = 0 RETURNING "_version", "_modified_by"`, sqlident.Quote(t.name)),
		change, s, entity.FormatTime(m.ModifiedAt), id).Scan(&m.Version, &m.ModifiedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("localdb: delete %s %q: %w", t.name, id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("localdb: delete %s %q: %w", t.name, id, err)
	}
	meta, _ := t.ent.Meta(ptr)
	*meta = m
	return nil
}

// Reader is a *DB or a *Tx: what [Query] reads from.
type Reader interface {
	reader() (querier, *DB)
}

func (db *DB) reader() (querier, *DB) { return db.sql, db }
func (tx *Tx) reader() (querier, *DB) { return tx.tx, tx.db }

// Query returns the live (not deleted) rows of T's table that match the SQL
// condition where, with args bound to its placeholders. An empty where
// matches every row. Rows come in id order. Safe for concurrent use.
func Query[T any](ctx context.Context, r Reader, where string, args ...any) ([]T, error) {
	q, db := r.reader()
	if err := db.checkOpen("Query"); err != nil {
		return nil, err
	}
	var zero T
	t, err := db.tableOf(&zero)
	if err != nil {
		return nil, err
	}
	stmt := fmt.Sprintf(`SELECT %s FROM %s WHERE "_deleted" = 0`, t.selectCols, sqlident.Quote(t.name))
	if where != "" {
		stmt += " AND (" + where + ")"
	}
	stmt += ` ORDER BY "id"`
	rows, err := q.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("localdb: query %s where %q: %w", t.name, where, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := t.scanRow(rows, &v); err != nil {
			return nil, fmt.Errorf("localdb: query %s: %w", t.name, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("localdb: query %s: %w", t.name, err)
	}
	return out, nil
}
