package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// Store is what the push engine needs of the local store; *localdb.Syncer
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
	// MarkSent records an acknowledged batch and the new state, or, with
	// st.Final, a last batch about to be sent with the commit.
	MarkSent(ctx context.Context, b localdb.DirtyBatch, st localdb.PushState) error
	// ForgetFinal forgets the last batch recorded with st.Final, which the
	// server did not commit.
	ForgetFinal(ctx context.Context) error
	// NextAttempt returns a new, larger attempt number, stored before it
	// is used (wire.BatchAttempt).
	NextAttempt(ctx context.Context) (int64, error)
	// FinishPush applies the answer to the commit and ends the session.
	// With own, the store holds everything the session pushed, as pushed:
	// the next pull need not bring it back (see localdb.Syncer.OwnSessions).
	FinishPush(ctx context.Context, c wire.Commit, own bool) error
}

// Transport is what the push engine needs of the server; *client.Client
// implements it.
type Transport interface {
	// SendBatch stages batch seq of the session; re-sending replaces it.
	// p.Open opens the session first, p.Commit commits it after (see
	// client.Client.SendBatch).
	SendBatch(ctx context.Context, device, session string, seq int, rows []wire.Row, p wire.BatchParams) (wire.BatchAck, error)
	// Settle commits the session; re-sending returns the first answer.
	// last names the batch sent with the commit whose answer was lost, and
	// the answer's Settled says whether that batch committed the session;
	// batches from last.Seq on that did not are dropped first.
	Settle(ctx context.Context, device, session string, last wire.LastBatch) (wire.Commit, error)
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
	// final is the last batch sent with the commit whose answer is not
	// known yet, with its session, for settle to count.
	final        localdb.DirtyBatch
	finalSession string
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

// noBatch is a digest no batch body has.
var noBatch = strings.Repeat("0", 64)

// finishCommitted fetches the answer of a session the server already
// committed (re-sent commits are idempotent) and applies it.
func (e *Engine) finishCommitted(ctx context.Context, res *Result, device, session string, acked int, own bool) error {
	if err := e.commit(ctx, res, device, session, acked, own); err != nil {
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
func (e *Engine) commit(ctx context.Context, res *Result, device, session string, acked int, own bool) error {
	// In the settle form, with a digest no batch has: the server drops
	// what an earlier attempt staged from the acknowledged count on, which
	// the device never recorded.
	c, err := e.tr.Settle(ctx, device, session, wire.LastBatch{Seq: acked, Digest: noBatch})
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
//
// A push takes as few requests as the server allows: the first batch opens
// the session (wire.BatchOpen) and the last one commits it
// (wire.BatchCommit), so that a push of one batch is one request. The last
// batch is recorded as sent before it goes (PushState.Final): when its
// answer is lost, the next push asks the server whether it was committed
// (settle) instead of sending rows that may have changed since.
func (e *Engine) push(ctx context.Context, res *Result) error {
	device := e.store.DeviceID()
	st, err := e.store.PushState(ctx)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	if st.Final {
		return e.settle(ctx, res, device, st)
	}
	size := e.opts.BatchSize
	fresh := st.Session == "" // a session this push makes, rather than resumes
	// Batches are read ahead while the one before is on the wire: the
	// reads only look at rows after the batch being sent, so they do not
	// depend on the server's answer. The batch after the one to send must
	// be read before it goes, to know whether it is the last.
	ctx, cancel := context.WithCancel(ctx)
	var ahead <-chan read = closed
	defer func() {
		cancel()
		<-ahead // never leave a read running on the store
	}()
	// from reads the batch at pos, and starts reading the one after it.
	from := func(pos localdb.PushPos) (localdb.DirtyBatch, error) {
		<-ahead
		ahead = e.read(ctx, pos, size)
		r := <-ahead
		ahead = closed
		if r.err == nil && len(r.batch.Rows) > 0 {
			ahead = e.read(ctx, r.batch.Next, size)
		}
		return r.batch, r.err
	}
	b, err := from(st.Pos)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	var after *localdb.DirtyBatch // the batch after b, once read
	var attempt int64             // numbers this push's sends (wire.BatchAttempt)
	if len(b.Rows) > 0 {
		if attempt, err = e.store.NextAttempt(ctx); err != nil {
			return fmt.Errorf("push: %w", err)
		}
	}
	for len(b.Rows) > 0 {
		if after == nil {
			r := <-ahead
			ahead = closed
			if r.err != nil {
				return fmt.Errorf("push: %w", r.err)
			}
			after = &r.batch
			if len(after.Rows) > 0 {
				ahead = e.read(ctx, after.Next, size)
			}
		}
		last := len(after.Rows) == 0
		if st.Session == "" {
			st.Session = uuid.NewString()
			// Stored before the server hears of it, so that a retry after
			// a lost answer finds the same session instead of leaving one
			// behind (G3).
			if err := e.store.BeginPush(ctx, st.Session); err != nil {
				return fmt.Errorf("push: %w", err)
			}
		}
		// The first batch opens the session and the last one commits it,
		// in the same requests.
		commit := last
		if commit { // recorded before it goes: see settle
			body, err := wire.AppendBatch(nil, b.Rows)
			if err != nil {
				return fmt.Errorf("push: %w", err)
			}
			sum := sha256.Sum256(body) // the server's digest of the same body
			fin := st
			fin.Final, fin.FinalDigest = true, hex.EncodeToString(sum[:])
			if err := e.store.MarkSent(ctx, b, fin); err != nil {
				return fmt.Errorf("push: %w", err)
			}
			e.final, e.finalSession = b, st.Session
		}
		ack, err := e.tr.SendBatch(ctx, device, st.Session, st.Seq, b.Rows, wire.BatchParams{Open: st.Seq == 0, Commit: commit, Attempt: attempt})
		if err != nil && commit {
			if !errors.Is(err, wire.ErrRefused) {
				// Committed or not: the next push settles it.
				return fmt.Errorf("push: session %s: %w", st.Session, err)
			}
			// Refused whole: the batch was not committed.
			if ferr := e.store.ForgetFinal(ctx); ferr != nil {
				return fmt.Errorf("push: %w", ferr)
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, wire.ErrSessionFull) && st.Seq > 0:
			// The server bounds a session: commit what it holds, and send
			// the rest in a new one.
			return e.finishCommitted(ctx, res, device, st.Session, st.Seq, fresh)
		case (errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrSessionFull)) && size > 1:
			size /= 2
			after = nil
			if b, err = from(st.Pos); err != nil {
				return fmt.Errorf("push: %w", err)
			}
			continue
		case errors.Is(err, wire.ErrConflict):
			// Committed already: its answer was lost after a commit, and
			// rows edited since are being sent in the same session (or a
			// copy of this database, restored from a backup, pushed it).
			// A first batch may instead have met the open-session limit.
			cerr := e.finishCommitted(ctx, res, device, st.Session, st.Seq, false)
			if st.Seq == 0 && errors.Is(cerr, wire.ErrNotFound) {
				return fmt.Errorf("push: session %s: %w", st.Session, err)
			}
			return cerr
		default:
			return fmt.Errorf("push: session %s: %w", st.Session, err)
		}
		if !commit {
			if err := e.acknowledged(ctx, res, b, &st); err != nil {
				return err
			}
			if !last {
				b, after = *after, nil
				continue
			}
			return e.commit(ctx, res, device, st.Session, st.Seq, fresh)
		}
		if ack.Commit == nil { // committed or not: the next push settles it
			return fmt.Errorf("push: session %s: the answer to the last batch holds no commit", st.Session)
		}
		if err := e.store.FinishPush(ctx, *ack.Commit, fresh); err != nil {
			return fmt.Errorf("push: session %s: %w", st.Session, err)
		}
		e.counted(res, b)
		res.Version = ack.Commit.Version
		res.Conflicts = append(res.Conflicts, ack.Commit.Conflicts...)
		return nil
	}
	if st.Session == "" {
		return nil
	}
	// Every row went up in batches acknowledged before (a push resumed
	// after a lost commit answer): commit apart.
	return e.commit(ctx, res, device, st.Session, st.Seq, fresh)
}

// settle finds out whether the last batch of the session, sent with the
// commit, was committed, when its answer was lost. The server stages that
// batch only together with the commit, so the session is either committed
// by it (the answer's Settled, checked by batch number and body digest) or
// not committed, and is then committed without it. If it is not in, its
// rows stay dirty and go up in the next session.
func (e *Engine) settle(ctx context.Context, res *Result, device string, st localdb.PushState) error {
	c, err := e.tr.Settle(ctx, device, st.Session, wire.LastBatch{Seq: st.Seq, Digest: st.FinalDigest})
	if err != nil {
		return fmt.Errorf("push: settle session %s: %w", st.Session, err)
	}
	in := c.Settled
	if !in {
		if err := e.store.ForgetFinal(ctx); err != nil {
			return fmt.Errorf("push: %w", err)
		}
	}
	if err := e.store.FinishPush(ctx, c, false); err != nil {
		return fmt.Errorf("push: session %s: %w", st.Session, err)
	}
	if in && e.finalSession == st.Session && len(e.final.Rows) > 0 {
		e.counted(res, e.final) // sent by this engine: counted now it is in
	}
	e.final, e.finalSession = localdb.DirtyBatch{}, ""
	res.Version = c.Version
	res.Conflicts = append(res.Conflicts, c.Conflicts...)
	return errCommitted
}

// acknowledged records that the server acknowledged batch b as batch
// st.Seq, advances st past it, and reports it.
func (e *Engine) acknowledged(ctx context.Context, res *Result, b localdb.DirtyBatch, st *localdb.PushState) error {
	st.Seq++
	st.Pos = b.Next
	if err := e.store.MarkSent(ctx, b, *st); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	e.counted(res, b)
	return nil
}

// counted adds the rows of a batch the server took to res, and reports
// them.
func (e *Engine) counted(res *Result, b localdb.DirtyBatch) {
	table := b.Rows[0].Table
	res.Rows[table] += len(b.Rows)
	if e.opts.OnBatch != nil {
		e.opts.OnBatch(table, len(b.Rows))
	}
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
