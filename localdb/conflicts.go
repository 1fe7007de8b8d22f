package localdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlident"
	"github.com/tethersync/tether/wire"
)

// ConflictRecord is an entry of the conflict log: a row this device pushed
// whose server row had changed meanwhile, and how the server settled it.
// It stays open until the app keeps the local version or dismisses it.
type ConflictRecord struct {
	// ID identifies the entry, for KeepLocal and DismissConflict.
	ID int64
	// Table is the table of the row.
	Table string
	// RowID is the id of the row.
	RowID string
	// Strategy is the strategy that resolved the conflict.
	Strategy string
	// Winner is wire.WinnerServer, WinnerClient or WinnerMerged.
	Winner string
	// Local is this device's version when the answer came (an edit made
	// after the push shows here, and is pushed next).
	Local wire.Row
	// PushedHLC is the clock stamp of the version that was pushed.
	PushedHLC string
	// Reason says why the server settled it so, for a conflict of
	// strategy "reference": a delete undone because live rows reference the
	// row, or a row deleted with the one it referenced (G12).
	Reason string
	// Winning is the row the server holds now.
	Winning wire.Row
	// Lost is the server's version the pushed or merged row replaced, when
	// the server's did not win.
	Lost *wire.Row
	// At is when this device recorded the conflict.
	At time.Time
}

// logConflict records cf with the local row as it stands, in tx, before
// the winner is applied.
func (db *DB) logConflict(ctx context.Context, tx *sql.Tx, cf wire.Conflict) error {
	t := db.byName[cf.Table]
	if t == nil {
		return fmt.Errorf("conflict on unknown table %q", cf.Table)
	}
	local, err := t.readWire(ctx, tx, cf.ID)
	if err != nil {
		return fmt.Errorf("conflict %s %q: %w", cf.Table, cf.ID, err)
	}
	lj, err := json.Marshal(local)
	if err != nil {
		return fmt.Errorf("conflict %s %q: local row: %w", cf.Table, cf.ID, err)
	}
	wj, err := json.Marshal(cf.Row)
	if err != nil {
		return fmt.Errorf("conflict %s %q: winning row: %w", cf.Table, cf.ID, err)
	}
	var lost any
	if cf.Lost != nil {
		b, err := json.Marshal(cf.Lost)
		if err != nil {
			return fmt.Errorf("conflict %s %q: lost row: %w", cf.Table, cf.ID, err)
		}
		lost = string(b)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO _tether_conflicts (tbl, row_id, strategy, winner, local, winning, lost, at, pushed_hlc, reason)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, cf.Table, cf.ID, cf.Strategy, cf.Winner, string(lj), string(wj), lost,
		entity.FormatTime(db.clock.now()), cf.PushedHLC, cf.Reason)
	if err != nil {
		return fmt.Errorf("log conflict %s %q: %w", cf.Table, cf.ID, err)
	}
	return nil
}

// readWire reads one row as a wire row with canonical values.
func (t *table) readWire(ctx context.Context, tx *sql.Tx, id string) (wire.Row, error) {
	rows, err := tx.QueryContext(ctx, fmt.Sprintf(`SELECT %s, "_change" FROM %s WHERE "id" = ?`, t.selectCols, sqlident.Quote(t.name)), id)
	if err != nil {
		return wire.Row{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return wire.Row{}, err
		}
		return wire.Row{Table: t.name, ID: id}, nil
	}
	r, _, err := t.scanWire(rows)
	return r, err
}

// Conflicts returns the open entries of the conflict log, oldest first.
func (db *DB) Conflicts(ctx context.Context) ([]ConflictRecord, error) {
	if err := db.checkOpen("Conflicts"); err != nil {
		return nil, err
	}
	rows, err := db.sql.QueryContext(ctx, `SELECT id, tbl, row_id, strategy, winner, local, winning, lost, at, pushed_hlc, reason
		FROM _tether_conflicts WHERE state = 'open' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("localdb: conflicts: %w", err)
	}
	defer rows.Close()
	var out []ConflictRecord
	for rows.Next() {
		var c ConflictRecord
		var local, winning, at string
		var lost sql.NullString
		if err := rows.Scan(&c.ID, &c.Table, &c.RowID, &c.Strategy, &c.Winner, &local, &winning, &lost, &at, &c.PushedHLC, &c.Reason); err != nil {
			return nil, fmt.Errorf("localdb: conflicts: %w", err)
		}
		if err := errors.Join(decodeRow(local, &c.Local), decodeRow(winning, &c.Winning)); err != nil {
			return nil, fmt.Errorf("localdb: %s: conflict %d: %w", db.path, c.ID, err)
		}
		if lost.Valid {
			c.Lost = &wire.Row{}
			if err := decodeRow(lost.String, c.Lost); err != nil {
				return nil, fmt.Errorf("localdb: %s: conflict %d: %w", db.path, c.ID, err)
			}
		}
		if c.At, err = entity.ParseTime(at); err != nil {
			return nil, fmt.Errorf("localdb: %s: conflict %d: time %q: %w", db.path, c.ID, at, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func decodeRow(s string, r *wire.Row) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	return dec.Decode(r)
}

// KeepLocal resolves an open conflict in favour of this device's version:
// it writes the local version again as a new local edit, which carries a
// later clock stamp and so wins the next push under last-writer-wins. The
// conflict is closed.
func (db *DB) KeepLocal(ctx context.Context, conflict int64) error {
	if err := db.checkOpen("KeepLocal"); err != nil {
		return err
	}
	return db.Update(ctx, func(tx *Tx) error {
		c, err := tx.openConflict(ctx, conflict)
		if err != nil {
			return err
		}
		t := db.byName[c.Table]
		if t == nil {
			return fmt.Errorf("localdb: conflict %d: unknown table %q", conflict, c.Table)
		}
		if err := tx.keepCounters(ctx, t, &c.Local); err != nil {
			return fmt.Errorf("localdb: keep local version of %s %q: %w", c.Table, c.RowID, err)
		}
		if err := tx.keepCounters(ctx, t, &c.Local); err != nil {
			return fmt.Errorf("localdb: keep local version of %s %q: %w", c.Table, c.RowID, err)
		}
		if err := tx.writeRaw(ctx, t, c.Local); err != nil {
			return fmt.Errorf("localdb: keep local version of %s %q: %w", c.Table, c.RowID, err)
		}
		return tx.closeConflict(ctx, conflict, "kept")
	})
}

// DismissConflict closes an open conflict, keeping the winning row.
func (db *DB) DismissConflict(ctx context.Context, conflict int64) error {
	if err := db.checkOpen("DismissConflict"); err != nil {
		return err
	}
	return db.Update(ctx, func(tx *Tx) error {
		if _, err := tx.openConflict(ctx, conflict); err != nil {
			return err
		}
		return tx.closeConflict(ctx, conflict, "dismissed")
	})
}

func (tx *Tx) openConflict(ctx context.Context, id int64) (ConflictRecord, error) {
	var c ConflictRecord
	var local string
	err := tx.tx.QueryRowContext(ctx, `SELECT tbl, row_id, local FROM _tether_conflicts WHERE id = ? AND state = 'open'`, id).
		Scan(&c.Table, &c.RowID, &local)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("localdb: conflict %d: %w", id, ErrConflictClosed)
	}
	if err != nil {
		return c, fmt.Errorf("localdb: conflict %d: %w", id, err)
	}
	if err := decodeRow(local, &c.Local); err != nil {
		return c, fmt.Errorf("localdb: conflict %d: %w", id, err)
	}
	return c, nil
}

func (tx *Tx) closeConflict(ctx context.Context, id int64, state string) error {
	_, err := tx.tx.ExecContext(ctx, `UPDATE _tether_conflicts SET state = ? WHERE id = ?`, state, id)
	return err
}

// writeRaw saves r's values (or its deletion) as a new local edit.
func (tx *Tx) writeRaw(ctx context.Context, t *table, r wire.Row) error {
	change, err := tx.nextChange(ctx)
	if err != nil {
		return err
	}
	m, s := tx.stamp()
	if r.Deleted {
		_, err := tx.tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET "_deleted" = 1, "_dirty" = 1, "_change" = ?, "_hlc" = ?, "_modified_at" = ?
			WHERE "id" = ?`, sqlident.Quote(t.name)), change, s, entity.FormatTime(m.ModifiedAt), r.ID)
		return err
	}
	args, err := t.wireArgs(r)
	if err != nil {
		return err
	}
	args = append(args, change, s, entity.FormatTime(m.ModifiedAt))
	var version int64
	var by string
	return tx.tx.QueryRowContext(ctx, t.upsertSave, args...).Scan(&version, &by)
}
