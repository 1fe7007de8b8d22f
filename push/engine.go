package push

import (
	"context"
	"errors"
	"fmt"

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
	// MarkFinal is MarkSent of a last batch (st.Final) that is the first
	// batch of a run of sends, with NextAttempt in the same write.
	MarkFinal(ctx context.Context, b localdb.DirtyBatch, st localdb.PushState) (int64, error)
	// FinishPush applies the answer to the commit and ends the session.
	// With own, the store holds everything the session pushed, as pushed:
	// the next pull need not bring it back (see localdb.Syncer.OwnSessions).
	FinishPush(ctx context.Context, c wire.Commit, own bool) error
	// Learned returns, once each, the conflicts the store recorded in its
	// conflict log beyond the commit's answer (see
	// localdb.Syncer.Learned): edits made during the push to rows a
	// refused write removed from the device.
	Learned() []wire.Conflict
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
	// OnBatch, if set, is called after each acknowledged batch, in batch
	// order.
	OnBatch func(table string, rows int)
	// InFlight is the number of batches on the wire at a time, once the
	// first batch of a run of sends is acknowledged (see the package
	// documentation). Default DefaultInFlight; at most MaxInFlight.
	InFlight int
}

// DefaultInFlight is the default of Options.InFlight, and MaxInFlight its
// bound: the server stages one batch of a session at a time (its
// transaction locks the session), so more would only wait there.
const (
	DefaultInFlight = 2
	MaxInFlight     = 2
)

// Result reports one push.
type Result struct {
	// Rows counts the rows sent per table.
	Rows map[string]int
	// Conflicts lists the conflicts the server resolved, and those the
	// store learned while it applied the answer (Store.Learned).
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
	if opts.InFlight < 1 {
		opts.InFlight = DefaultInFlight
	}
	opts.InFlight = min(opts.InFlight, MaxInFlight)
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
