package sqlbatch

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Chunk is the number of rows per statement. At 16 columns a chunk binds
// 1,024 parameters, far below SQLite's limit of 32,766.
const Chunk = 64

// Inserter buffers rows and writes them Chunk at a time.
type Inserter struct {
	tx    *sql.Tx
	head  string // INSERT INTO t (cols)
	tail  string // ON CONFLICT ... or ""
	width int
	args  []any
	rows  int
	full  string // the statement for a full chunk

	// Affected is the number of rows the statements so far inserted or
	// updated.
	Affected int64
}

// New returns an inserter that runs head + " VALUES (?, ...), ... " + tail
// in tx for rows of width values.
func New(tx *sql.Tx, head, tail string, width int) *Inserter {
	in := &Inserter{tx: tx, head: head, tail: tail, width: width, args: make([]any, 0, Chunk*width)}
	in.full = in.stmt(Chunk)
	return in
}

func (in *Inserter) stmt(rows int) string {
	row := "(" + strings.Repeat("?, ", in.width-1) + "?)"
	return in.head + " VALUES " + strings.Repeat(row+", ", rows-1) + row + " " + in.tail
}

// Add buffers one row of exactly width values, writing a chunk when full.
func (in *Inserter) Add(ctx context.Context, vals ...any) error {
	if len(vals) != in.width {
		return fmt.Errorf("sqlbatch: row of %d values, want %d", len(vals), in.width)
	}
	in.args = append(in.args, vals...)
	in.rows++
	if in.rows == Chunk {
		return in.Flush(ctx)
	}
	return nil
}

// Flush writes the buffered rows.
func (in *Inserter) Flush(ctx context.Context) error {
	if in.rows == 0 {
		return nil
	}
	q := in.full
	if in.rows != Chunk {
		q = in.stmt(in.rows)
	}
	res, err := in.tx.ExecContext(ctx, q, in.args...)
	in.args, in.rows = in.args[:0], 0
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	in.Affected += n
	return err
}
