package localdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tethersync/tether/internal/sqlbatch"
	"github.com/tethersync/tether/wire"
)

// writeRemote writes rows received from the server, clean, with the upsert
// tail of each table, after the rows set aside (StashChanges), then runs
// finish (which stores where the device stands), in one transaction with
// change tracking suppressed. With notify, the rows the server marked for
// this device go into its conflict log first. It returns the number of
// rows written.
func (db *DB) writeRemote(ctx context.Context, rows []wire.Row, notify bool, tail func(*table) string, finish func(tx *sql.Tx) error) (int, error) {
	written := 0
	err := db.inTxUnchecked(ctx, func(tx *sql.Tx) error {
		return suppressed(ctx, tx, func() error {
			w := &remoteWriter{db: db, tx: tx, notify: notify, tail: tail, ins: map[*table]*sqlbatch.Inserter{}}
			if err := w.unstash(ctx); err != nil {
				return err
			}
			for i := range rows {
				if err := w.put(ctx, &rows[i], nil); err != nil {
					return err
				}
			}
			if err := flushAll(ctx, w.ins); err != nil {
				return err
			}
			for _, in := range w.ins {
				written += int(in.Affected)
			}
			if err := finish(tx); err != nil {
				return err
			}
			return setState(ctx, tx, stateClock, db.clock.last())
		})
	})
	return written, err
}

// remoteWriter writes the rows of one writeRemote, table by table in
// multi-row inserts.
type remoteWriter struct {
	db     *DB
	tx     *sql.Tx
	notify bool
	tail   func(*table) string
	ins    map[*table]*sqlbatch.Inserter

	cols   map[*table]map[string]int // the index of each column but id, by name
	args   map[*table][]any          // a row's arguments, reused: Add copies them
	stamp  string                    // the last stamp's time, for the next row's
	stampP int64                     // of the physical time stampP
}

// put writes r, an eviction or a row to upsert. vals, when not nil, are
// r's entity columns already converted (id first), and r.Values holds
// them only if r is a notice to this device.
func (w *remoteWriter) put(ctx context.Context, r *wire.Row, vals []any) error {
	db := w.db
	if r.Evict {
		if t := db.byName[r.Table]; t != nil {
			if err := flushAll(ctx, w.ins); err != nil {
				return err
			}
			if _, err := db.evict(ctx, w.tx, t, r.ID, 0); err != nil {
				return err
			}
		}
		return nil
	}
	t, args, err := w.remoteRow(ctx, r, vals)
	if err != nil || t == nil {
		return err
	}
	in := w.ins[t]
	if in == nil {
		in = sqlbatch.New(w.tx, t.applyHead, w.tail(t), len(args))
		w.ins[t] = in
	}
	if err := in.Add(ctx, args...); err != nil {
		return fmt.Errorf("write %s: %w", t.name, err)
	}
	return nil
}

// remoteRow prepares a received row for the insert of applyHead: its
// table and arguments, or a nil table for a row not to store. vals are
// its converted entity columns, or nil to convert r.Values. With notify,
// a row the server marked for this device goes into its conflict log. It
// moves the clock past the row's stamp.
func (w *remoteWriter) remoteRow(ctx context.Context, r *wire.Row, vals []any) (*table, []any, error) {
	db := w.db
	t := db.byName[r.Table]
	if t == nil {
		return nil, nil, nil // a table of a newer app version: not this device's
	}
	if r.Deleted {
		// The tombstone of a row this device never held tells it nothing,
		// and may reference a row it does not hold either (a rebuilt
		// device's parents are gone): not stored, unless a row here
		// references it.
		keep, err := db.holdsOrReferenced(ctx, w.tx, t, r.ID)
		if err != nil || !keep {
			return nil, nil, err
		}
	}
	if w.notify && w.notice(r) {
		// The server undid this device's action to keep references whole:
		// it goes into the conflict log, with the row as it stands here
		// before the change.
		cf := wire.Conflict{Table: r.Table, ID: r.ID, Strategy: wire.StrategyReference, Winner: wire.WinnerServer, Row: *r, Reason: r.Reason}
		if err := db.learnConflict(ctx, w.tx, cf); err != nil {
			return nil, nil, err
		}
	}
	db.clock.Observe(r.HLC)
	if vals == nil {
		var err error
		if vals, err = t.wireArgs(*r); err != nil {
			return nil, nil, err
		}
	}
	// A received row is clean: "_dirty" = 0 comes first among the
	// bookkeeping columns.
	return t, append(vals, 0, r.Deleted, r.Version, r.HLC, w.stampTime(r.HLC), r.ModifiedBy), nil
}

// notice reports whether r is a row the server marked for this device.
func (w *remoteWriter) notice(r *wire.Row) bool {
	return r.Notify == w.db.device && r.Reason != ""
}

// stampTime is entityTime(stampTime(hlc)), for rows whose stamps share
// their physical time, as a session's do, formatted once.
func (w *remoteWriter) stampTime(hlc string) string {
	ms, _, _, err := wire.ParseStamp(hlc)
	if err != nil {
		return ""
	}
	if ms != w.stampP || w.stamp == "" {
		w.stamp, w.stampP = entityTime(stampTime(hlc)), ms
	}
	return w.stamp
}

// unstash writes the rows set aside, in order, and empties the stash.
func (w *remoteWriter) unstash(ctx context.Context) error {
	seq := int64(-1)
	for {
		var text string
		err := w.tx.QueryRowContext(ctx, `SELECT seq, row FROM _tether_stash WHERE seq > ? ORDER BY seq LIMIT 1`, seq).Scan(&seq, &text)
		if errors.Is(err, sql.ErrNoRows) {
			_, err := w.tx.ExecContext(ctx, `DELETE FROM _tether_stash`)
			return err
		}
		if err != nil {
			return err
		}
		if isStashedPage(text) {
			if err := w.putPage(ctx, text); err != nil {
				return fmt.Errorf("stashed page: %w", err)
			}
			continue
		}
		var r wire.Row
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber() // as the client reads pages
		if err := dec.Decode(&r); err != nil {
			return fmt.Errorf("stashed row: %w", err)
		}
		if err := w.put(ctx, &r, nil); err != nil {
			return err
		}
	}
}

// putPage writes the rows of a page set aside, its values converted into
// the arguments of the insert as they are read, without a map in between.
func (w *remoteWriter) putPage(ctx context.Context, text string) error {
	rr, err := wire.NewRowReader(stashedPage(text))
	if err != nil {
		return err
	}
	var t *table
	var vals []any
	var cols map[string]int
	start := func(r *wire.Row) {
		if t = w.db.byName[r.Table]; t != nil {
			vals, cols = w.rowArgs(t), w.colIndex(t)
		}
	}
	value := func(r *wire.Row, name string, v any) error {
		if vals == nil {
			start(r)
			if t == nil {
				return nil
			}
		}
		if w.notify && w.notice(r) { // the conflict log keeps the row as sent
			if r.Values == nil {
				r.Values = map[string]any{}
			}
			r.Values[name] = v
		}
		i, ok := cols[name]
		if !ok {
			return nil // a column of a newer app version, or id
		}
		c := t.cols[i]
		x, err := c.Kind.FromWire(v)
		if err != nil {
			return fmt.Errorf("%s %q column %s: %w", t.name, r.ID, c.Name, err)
		}
		vals[i] = x
		return nil
	}
	for {
		var r wire.Row
		t, vals = nil, nil
		err := rr.Next(&r, value)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if vals == nil {
			start(&r)
		}
		if t != nil {
			vals[0] = r.ID
			if w.notify && w.notice(&r) && r.Values == nil {
				r.Values = map[string]any{}
			}
		}
		if err := w.put(ctx, &r, vals); err != nil {
			return err
		}
	}
}

// rowArgs returns the argument slice of t's rows, cleared: its entity
// columns all NULL, room for the bookkeeping ones.
func (w *remoteWriter) rowArgs(t *table) []any {
	if w.args == nil {
		w.args = map[*table][]any{}
	}
	a := w.args[t]
	if a == nil {
		a = make([]any, len(t.cols), len(t.cols)+6)
		w.args[t] = a
	}
	clear(a)
	return a
}

// colIndex returns the index in t.cols of each column but id, by name.
func (w *remoteWriter) colIndex(t *table) map[string]int {
	if w.cols == nil {
		w.cols = map[*table]map[string]int{}
	}
	m := w.cols[t]
	if m == nil {
		m = make(map[string]int, len(t.cols))
		for i, c := range t.cols[1:] {
			m[c.Name] = i + 1
		}
		w.cols[t] = m
	}
	return m
}

// flushAll writes what the inserters hold.
func flushAll(ctx context.Context, ins map[*table]*sqlbatch.Inserter) error {
	for t, in := range ins {
		if err := in.Flush(ctx); err != nil {
			return fmt.Errorf("write %s: %w", t.name, err)
		}
	}
	return nil
}
