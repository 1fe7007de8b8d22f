package push

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// Store is what the push engine needs of the local store; *localdb.DB
// implements it.
type Store interface {
	// DeviceID names the device to the server.
	DeviceID() string
	// PushState returns the unfinished session, if any.
	PushState(ctx context.Context) (localdb.PushState, error)
	// BeginPush records a new session before the server hears of it.
	BeginPush(ctx context.Context, session string) error
	// AbandonPush forgets a session the server no longer knows.
	AbandonPush(ctx context.Context) error
	// NextDirty reads the next batch of dirty rows from pos.
	NextDirty(ctx context.Context, pos localdb.PushPos, limit int) (localdb.DirtyBatch, error)
	// MarkSent records an acknowledged batch and the new state.
	MarkSent(ctx context.Context, b localdb.DirtyBatch, st localdb.PushState) error
	// FinishPush applies the answer to the commit and ends the session.
	// With own, the store holds everything the session pushed, as pushed:
	// the next pull need not bring it back (see localdb.DB.OwnSessions).
	FinishPush(ctx context.Context, c wire.Commit, own bool) error
}

// Transport is what the push engine needs of the server; *client.Client
// implements it.
type Transport interface {
	// OpenSession opens the session with the given id; idempotent.
	OpenSession(ctx context.Context, device, session string) (string, error)
	// SendBatch stages batch seq of the session; re-sending replaces it.
	SendBatch(ctx context.Context, device, session string, seq int, rows []wire.Row) error
	// Commit applies the session; re-sending returns the first answer.
	Commit(ctx context.Context, device, session string) (wire.Commit, error)
}

// Options configures an Engine. The zero value works.
type Options struct {
	// BatchSize is the number of rows per batch. Default
	// wire.DefaultBatchSize; at most wire.MaxBatchSize.
	BatchSize int
	// OnBatch, if set, is called after each acknowledged batch.
	OnBatch func(table string, rows int)
}

// Result reports one push.
type Result struct {
	// Rows counts the rows sent per table.
	Rows map[string]int
	// Conflicts lists the conflicts the server resolved.
	Conflicts []wire.Conflict
	// Version is the server version of the committed session; 0 when
	// there was nothing to push.
	Version int64
}

// Engine pushes a store's dirty rows. It is not safe for concurrent use:
// the coordinator runs one push at a time.
type Engine struct {
	store Store
	tr    Transport
	opts  Options
}

// New returns an engine.
func New(store Store, tr Transport, opts Options) *Engine {
	opts.BatchSize = wire.BatchSize(opts.BatchSize)
	return &Engine{store: store, tr: tr, opts: opts}
}

// Push sends every dirty row and commits the session. Errors wrap the
// transport's, so callers can classify them. When the server no longer
// knows the session, or it is another user's (a device shared by several
// people, one of whom started the push), Push starts a new one, once.
func (e *Engine) Push(ctx context.Context) (Result, error) {
	res := Result{Rows: map[string]int{}}
	err := e.push(ctx, &res)
	switch {
	case errors.Is(err, wire.ErrNotFound), errors.Is(err, wire.ErrForbidden):
		if aerr := e.store.AbandonPush(ctx); aerr != nil {
			return res, fmt.Errorf("push: abandon lost session: %w", aerr)
		}
		err = e.push(ctx, &res)
	}
	// The rows left after a session was committed early (its answer was
	// lost, or the server bounds a session's size) go up in new sessions.
	for i := 0; errors.Is(err, errCommitted) && i < maxSessions; i++ {
		err = e.push(ctx, &res)
	}
	return res, err
}

// maxSessions bounds the sessions one Push commits.
const maxSessions = 100_000

// errCommitted means the session was committed before every dirty row was
// sent (the commit's answer had been lost, or the session was full): push
// finished it, and rows remain.
var errCommitted = errors.New("push: session was committed; rows remain")

// finishCommitted fetches the answer of a session the server already
// committed (re-sent commits are idempotent) and applies it.
func (e *Engine) finishCommitted(ctx context.Context, res *Result, device, session string, own bool) error {
	if err := e.commit(ctx, res, device, session, own); err != nil {
		return err
	}
	return errCommitted
}

// commit commits the session on the server, applies the server's answer
// to the store (which ends the push session there), and adds it to res.
// Committing a session again is idempotent: the server answers as it did
// the first time.
//
// With own, the store records the session as one whose rows it holds as
// pushed: only for a session this engine opened and saw through itself. A
// session resumed from the database may have been pushed further by a copy
// of it (a backup restored over it), and one found already committed may
// hold rows this database never sent.
func (e *Engine) commit(ctx context.Context, res *Result, device, session string, own bool) error {
	c, err := e.tr.Commit(ctx, device, session)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	if err := e.store.FinishPush(ctx, c, own); err != nil {
		return fmt.Errorf("push: session %s: %w", session, err)
	}
	res.Version = c.Version
	res.Conflicts = append(res.Conflicts, c.Conflicts...)
	return nil
}

// push sends the dirty rows from the stored position on, in the stored
// session or a new one, and commits the session.
func (e *Engine) push(ctx context.Context, res *Result) error {
	device := e.store.DeviceID()
	st, err := e.store.PushState(ctx)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	size := e.opts.BatchSize
	opened := false
	fresh := st.Session == "" // a session this push makes, rather than resumes
	// The next batch is read while the current one is on the wire. The
	// read only looks at rows after the current batch, so it does not
	// depend on the server's answer.
	ctx, cancel := context.WithCancel(ctx)
	next := e.read(ctx, st.Pos, size)
	defer func() {
		cancel()
		<-next // never leave a read running on the store
	}()
	for {
		r := <-next
		next = closed
		if r.err != nil {
			return fmt.Errorf("push: %w", r.err)
		}
		b := r.batch
		if len(b.Rows) == 0 {
			break
		}
		if err := e.open(ctx, device, &st, &opened); err != nil {
			return fmt.Errorf("push: %w", err)
		}
		next = e.read(ctx, b.Next, size)
		err = e.tr.SendBatch(ctx, device, st.Session, st.Seq, b.Rows)
		if errors.Is(err, wire.ErrSessionFull) && st.Seq > 0 {
			// The server bounds a session: commit what it holds, and send
			// the rest in a new one.
			return e.finishCommitted(ctx, res, device, st.Session, fresh)
		}
		if (errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrSessionFull)) && size > 1 {
			<-next
			size /= 2
			next = e.read(ctx, st.Pos, size)
			continue
		}
		if errors.Is(err, wire.ErrConflict) && st.Seq > 0 {
			// Committed already: its answer was lost after a commit, and
			// rows edited since are being sent in the same session.
			return e.finishCommitted(ctx, res, device, st.Session, false)
		}
		if err != nil {
			return fmt.Errorf("push: session %s: %w", st.Session, err)
		}
		if err := e.acknowledged(ctx, res, b, &st); err != nil {
			return err
		}
	}
	if st.Session == "" {
		return nil
	}
	return e.commit(ctx, res, device, st.Session, fresh)
}

// open makes sure the push session exists before its first batch is sent.
// The session id is made here and stored before the server hears of it,
// so that opening it again after a lost answer finds the same session
// instead of leaving one behind (G3). A session that already has
// acknowledged batches, or was opened by this push, is not opened again.
func (e *Engine) open(ctx context.Context, device string, st *localdb.PushState, opened *bool) error {
	if st.Session == "" {
		st.Session = uuid.NewString()
		if err := e.store.BeginPush(ctx, st.Session); err != nil {
			return err
		}
	}
	if st.Seq == 0 && !*opened {
		if _, err := e.tr.OpenSession(ctx, device, st.Session); err != nil {
			return err
		}
		*opened = true
	}
	return nil
}

// acknowledged records that the server acknowledged batch b as batch
// st.Seq, advances st past it, and reports it.
func (e *Engine) acknowledged(ctx context.Context, res *Result, b localdb.DirtyBatch, st *localdb.PushState) error {
	st.Seq++
	st.Pos = b.Next
	if err := e.store.MarkSent(ctx, b, *st); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	table := b.Rows[0].Table
	res.Rows[table] += len(b.Rows)
	if e.opts.OnBatch != nil {
		e.opts.OnBatch(table, len(b.Rows))
	}
	return nil
}

type read struct {
	batch localdb.DirtyBatch
	err   error
}

// closed is a channel with nothing more to receive: the state of next
// when no read is under way.
var closed = func() chan read { c := make(chan read); close(c); return c }()

// read reads the batch at pos in the background.
func (e *Engine) read(ctx context.Context, pos localdb.PushPos, size int) <-chan read {
	out := make(chan read, 1)
	go func() {
		b, err := e.store.NextDirty(ctx, pos, size)
		out <- read{b, err}
	}()
	return out
}
