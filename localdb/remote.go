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
	// Large: many rows, or the rows set aside (with none, only those).
	large := len(rows) == 0 || len(rows) >= largeRows || db.stashed.Load()
	err := db.inTxUnchecked(ctx, large, func(tx *sql.Tx) error {
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
	if err == nil {
		db.stashed.Store(false) // applied, and emptied
	}
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

	stamp  string // the last stamp's time, for the next row's
	stampP int64  // of the physical time stampP
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
	if w.notice(r) {
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
func (w *remoteWriter) notice(r *wire.Row) bool { return isNotice(w.db, w.notify, r) }

// isNotice reports whether r is a row the server marked for db's device,
// when the rows are written with notify.
func isNotice(db *DB, notify bool, r *wire.Row) bool {
	return notify && r.Notify == db.device && r.Reason != ""
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
// The rows are read and converted (a stashReader) beside the writes, on
// another goroutine: on a device with two cores, decoding a large session
// costs little more than inserting it.
func (w *remoteWriter) unstash(ctx context.Context) error {
	sr := newStashReader(w.db, w.notify)
	defer sr.stop()
	seq := int64(-1)
	var text *string // the entry read next, not handed over yet
	readEntry := func() error {
		var t string
		err := w.tx.QueryRowContext(ctx, `SELECT seq, row FROM _tether_stash WHERE seq > ? ORDER BY seq LIMIT 1`, seq).Scan(&seq, &t)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			text = nil
			close(sr.entries)
			return nil
		case err != nil:
			return err
		}
		text = &t
		return nil
	}
	if err := readEntry(); err != nil {
		return err
	}
	for {
		var send chan<- string // nil, so not chosen, with no entry to hand over
		var next string
		if text != nil {
			send, next = sr.entries, *text
		}
		select {
		case send <- next:
			if err := readEntry(); err != nil {
				return err
			}
		case chunk, ok := <-sr.rows:
			if !ok {
				if err := sr.err(); err != nil {
					return err
				}
				_, err := w.tx.ExecContext(ctx, `DELETE FROM _tether_stash`)
				return err
			}
			for i := range chunk {
				if err := w.put(ctx, &chunk[i].r, chunk[i].vals); err != nil {
					return err
				}
			}
		}
	}
}

// stashed is a row set aside, read back: the row, and when its table is
// this device's and it came in a page, its entity columns converted (id
// first), with r.Values set only if it is a notice to this device (see
// remoteWriter.put).
type stashed struct {
	r    wire.Row
	vals []any
}

// stashReader reads the entries of the stash handed to it (entries, closed
// after the last) into rows, in chunks, on a goroutine of its own, and
// closes rows after the last or at the first error (err).
type stashReader struct {
	db      *DB
	notify  bool
	entries chan string
	rows    chan []stashed
	quit    chan struct{}
	done    chan struct{}
	fail    error
	cols    map[*table]map[string]int // the index of each column but id, by name
}

// stashRows is the number of rows a stashReader hands over at once.
const stashRows = 128

func newStashReader(db *DB, notify bool) *stashReader {
	sr := &stashReader{db: db, notify: notify, entries: make(chan string, 1), rows: make(chan []stashed, 4),
		quit: make(chan struct{}), done: make(chan struct{}), cols: map[*table]map[string]int{}}
	go sr.run()
	return sr
}

func (sr *stashReader) run() {
	defer close(sr.done)
	defer close(sr.rows)
	var chunk []stashed
	emit := func(s stashed) bool {
		chunk = append(chunk, s)
		if len(chunk) < stashRows {
			return true
		}
		return sr.hand(&chunk)
	}
	for {
		var text string
		var more bool
		select {
		case text, more = <-sr.entries:
		case <-sr.quit:
			return
		}
		if !more {
			break
		}
		var err error
		if isStashedPage(text) {
			err = sr.page(text, emit)
		} else {
			var r wire.Row
			dec := json.NewDecoder(strings.NewReader(text))
			dec.UseNumber() // as the client reads pages
			if err = dec.Decode(&r); err != nil {
				err = fmt.Errorf("stashed row: %w", err)
			} else if !emit(stashed{r: r}) {
				return
			}
		}
		if err != nil {
			sr.fail = err
			return
		}
	}
	sr.hand(&chunk)
}

// hand hands the rows of *chunk over, and empties it; false when the
// writer stopped.
func (sr *stashReader) hand(chunk *[]stashed) bool {
	if len(*chunk) == 0 {
		return true
	}
	select {
	case sr.rows <- *chunk:
		*chunk = nil
		return true
	case <-sr.quit:
		return false
	}
}

// err is the error that ended the reading, once rows is closed.
func (sr *stashReader) err() error {
	<-sr.done
	return sr.fail
}

// stop stops the reader, if it still runs, and waits for it.
func (sr *stashReader) stop() {
	close(sr.quit)
	<-sr.done
}

// page reads the rows of a page set aside, its values converted into the
// arguments of the insert as they are read, without a map in between, and
// emits each; it stops when emit returns false.
func (sr *stashReader) page(text string, emit func(stashed) bool) error {
	rr, err := wire.NewRowReader(stashedPage(text))
	if err != nil {
		return fmt.Errorf("stashed page: %w", err)
	}
	var t *table
	var vals []any
	var cols map[string]int
	start := func(r *wire.Row) {
		if t = sr.db.byName[r.Table]; t != nil {
			vals, cols = make([]any, len(t.cols), len(t.cols)+6), sr.colIndex(t)
		}
	}
	notice := func(r *wire.Row) bool { return isNotice(sr.db, sr.notify, r) }
	value := func(r *wire.Row, name string, v any) error {
		if vals == nil {
			start(r)
			if t == nil {
				return nil
			}
		}
		if notice(r) { // the conflict log keeps the row as sent
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
			return fmt.Errorf("stashed page: %w", err)
		}
		if vals == nil {
			start(&r)
		}
		if t != nil {
			vals[0] = r.ID
			if notice(&r) && r.Values == nil {
				r.Values = map[string]any{}
			}
		}
		if !emit(stashed{r: r, vals: vals}) {
			return nil
		}
	}
}

// colIndex returns the index in t.cols of each column but id, by name.
func (sr *stashReader) colIndex(t *table) map[string]int {
	m := sr.cols[t]
	if m == nil {
		m = make(map[string]int, len(t.cols))
		for i, c := range t.cols[1:] {
			m[c.Name] = i + 1
		}
		sr.cols[t] = m
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
