package pull

import (
	"context"
	"fmt"

	"github.com/tethersync/tether/wire"
)

// Store is what the pull engine needs of the local store; *localdb.Syncer
// implements it.
type Store interface {
	// Cursor returns the stored cursor; "" before the first pull.
	Cursor(ctx context.Context) (string, error)
	// ApplyChanges applies the pages set aside and a page, and stores the
	// cursor after it, in the same transaction, and returns the number of
	// rows written.
	ApplyChanges(ctx context.Context, rows []wire.Row, cursor string) (int, error)
	// StashChanges sets aside the rows of a page that does not end on a
	// whole server version (wire.Changes.Partial), with the cursor after
	// it, in one transaction, for ApplyChanges to apply with the page that
	// completes it.
	StashChanges(ctx context.Context, page wire.Changes) error
	// DeviceID is the id of the device.
	DeviceID() string
	// OwnSessions returns the push sessions whose rows the store holds as
	// pushed, which the server need not send back, and a mark for
	// ApplyLastChanges.
	OwnSessions(ctx context.Context) ([]string, int64, error)
	// ApplyLastChanges is ApplyChanges for the last page of a pull, which
	// also forgets, in the same transaction, the own sessions up to mark
	// (from OwnSessions): the pull passed them.
	ApplyLastChanges(ctx context.Context, rows []wire.Row, cursor string, mark int64) (int, error)
	// Learned returns, once each, the conflicts the store recorded in its
	// conflict log while it applied rows (see localdb.Syncer.Learned).
	Learned() []wire.Conflict
}

// Transport is what the pull engine needs of the server; *client.Client
// implements it, and HeadTransport.
type Transport interface {
	// Changes returns up to limit changes after cursor, passing over the
	// rows device pushed in the sessions own that the server kept as
	// pushed.
	Changes(ctx context.Context, device, cursor string, limit int, own []string) (wire.Changes, error)
}

// HeadTransport is a Transport that can tell where a page ends before its
// rows are read: the engine then asks for the next page meanwhile.
type HeadTransport interface {
	Transport
	// ChangesHead is Changes that calls head, at most once and before it
	// returns, with the page's Cursor, More, Wait and Partial, as soon as
	// they are known. A page that is Partial with More may come with Raw
	// and its rows without their values (wire.ReadChangesAside): the
	// engine only sets such a page aside.
	ChangesHead(ctx context.Context, device, cursor string, limit int, own []string, head func(wire.Changes)) (wire.Changes, error)
}

// Options configures an Engine. The zero value works.
type Options struct {
	// PageSize is the number of rows per page. Default
	// wire.DefaultBatchSize; at most wire.MaxBatchSize.
	PageSize int
	// OnPage, if set, is called after each applied page with the rows
	// received per table.
	OnPage func(rows map[string]int)
}

// Result reports one pull.
type Result struct {
	// Rows counts the rows received per table.
	Rows map[string]int
	// Evicted counts the rows the server told the device to remove
	// because its principal may no longer see them (scopes).
	Evicted int
	// Applied is the number of rows written locally; received rows the
	// device already had, or holds dirty, are not written.
	Applied int
	// Conflicts are the conflicts the pulled rows told the device of, each
	// once: its actions the server undid to keep references whole (a
	// delete undone, a row deleted with the one it referenced), and edits
	// made here to rows removed because its principal may no longer see
	// them. The store's conflict log records them too.
	Conflicts []wire.Conflict
}

// Engine pulls changes into a store. It is not safe for concurrent use.
type Engine struct {
	store Store
	tr    Transport
	opts  Options
}

// New returns an engine.
func New(store Store, tr Transport, opts Options) *Engine {
	opts.PageSize = wire.BatchSize(opts.PageSize)
	return &Engine{store: store, tr: tr, opts: opts}
}

// Pull applies every change after the stored cursor. While a page is
// applied, the next one is already being fetched, so network and disk work
// overlap; with a HeadTransport, the page after that is asked for as soon
// as the next one's answer tells where it ends, while its rows are read.
// At most three pages are held in memory.
func (e *Engine) Pull(ctx context.Context) (Result, error) {
	res := Result{Rows: map[string]int{}}
	cursor, err := e.store.Cursor(ctx)
	if err != nil {
		return res, fmt.Errorf("pull: %w", err)
	}
	// The rows this device pushed and holds come back only where the
	// server changed them: its echo is not downloaded.
	own, mark, err := e.store.OwnSessions(ctx)
	if err != nil {
		return res, fmt.Errorf("pull: %w", err)
	}
	device := e.store.DeviceID()
	ctx, cancel := context.WithCancel(ctx)
	next := e.fetch(ctx, device, cursor, own, taken)
	defer func() {
		cancel()
		drain(next) // never leave a fetch running
	}()
	for {
		f := <-next // always a fetch under way here
		next = fetchedAll
		close(f.taken) // the fetch after it may start the one after that
		if f.err != nil {
			f.drop()
			return res, fmt.Errorf("pull after %q: %w", cursor, f.err)
		}
		ch := f.page
		// A page may be empty when it held only this device's echo: the
		// cursor still moves.
		more := ch.More && (len(ch.Changes) > 0 || ch.Cursor != cursor)
		if f.early != nil {
			if more && !ch.Wait && f.earlyAt == ch.Cursor {
				next = f.early // asked for already, from the page's head
			} else { // the page ended otherwise than its head said
				f.drop()
			}
		}
		if next == fetchedAll && more && !ch.Wait {
			next = e.fetch(ctx, device, ch.Cursor, own, f.taken)
		}
		if ch.Partial && more {
			// Part of a version: set aside until the version is whole,
			// so that the app never sees half a session (G4).
			if err := e.store.StashChanges(ctx, ch); err != nil {
				return res, fmt.Errorf("pull after %q: %w", cursor, err)
			}
		} else {
			var n int
			var err error
			if more {
				n, err = e.store.ApplyChanges(ctx, ch.Changes, ch.Cursor)
			} else { // passed the own sessions too: the next pull starts after them
				n, err = e.store.ApplyLastChanges(ctx, ch.Changes, ch.Cursor, mark)
			}
			if err != nil {
				return res, fmt.Errorf("pull after %q: %w", cursor, err)
			}
			res.Applied += n
			res.Conflicts = append(res.Conflicts, e.store.Learned()...)
		}
		e.counted(&res, ch.Changes)
		cursor = ch.Cursor
		if more && ch.Wait { // stored: the server may now count on it
			next = e.fetch(ctx, device, ch.Cursor, own, f.taken)
		}
		if !more {
			return res, nil
		}
	}
}

// counted adds an applied page's rows to res, and reports them.
func (e *Engine) counted(res *Result, rows []wire.Row) {
	if len(rows) == 0 {
		return
	}
	page := map[string]int{}
	for _, r := range rows {
		if r.Evict {
			res.Evicted++
			continue
		}
		page[r.Table]++
		res.Rows[r.Table]++
	}
	if e.opts.OnPage != nil {
		e.opts.OnPage(page)
	}
}

type fetched struct {
	page wire.Changes
	err  error
	// taken is closed once the engine received the page: only then may
	// the fetch of the page after it start the one after that, so that at
	// most three pages are held.
	taken chan struct{}
	// early is the fetch of the next page, started when the answer told
	// where this page ends (at earlyAt), or nil; stop cancels it.
	early   <-chan fetched
	earlyAt string
	stop    context.CancelFunc
}

// fetchedAll is a channel with nothing more to receive: the state of a
// pull's next fetch when none is under way.
var fetchedAll = func() chan fetched { c := make(chan fetched); close(c); return c }()

// taken is a closed channel: the taken of a page the engine holds.
var taken = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// fetch requests the page after cursor in the background; the caller
// receives its answer, or drains it, before it returns. prev is closed
// once the engine received the page before it: with a HeadTransport, the
// fetch then asks for the next page as soon as the answer tells where
// this one ends, unless the server asks to wait.
func (e *Engine) fetch(ctx context.Context, device, cursor string, own []string, prev <-chan struct{}) <-chan fetched {
	out := make(chan fetched, 1)
	go func() {
		f := fetched{taken: make(chan struct{})}
		ht, ok := e.tr.(HeadTransport)
		if !ok {
			f.page, f.err = e.tr.Changes(ctx, device, cursor, e.opts.PageSize, own)
			out <- f
			return
		}
		head := func(h wire.Changes) {
			select {
			case <-prev:
			default:
				return // the engine has two pages to go: no third
			}
			if h.More && !h.Wait && h.Cursor != cursor {
				var ectx context.Context
				ectx, f.stop = context.WithCancel(ctx)
				f.early, f.earlyAt = e.fetch(ectx, device, h.Cursor, own, f.taken), h.Cursor
			}
		}
		f.page, f.err = ht.ChangesHead(ctx, device, cursor, e.opts.PageSize, own, head)
		out <- f
	}()
	return out
}

// drop cancels the fetch f started early, if any, and waits for it.
func (f *fetched) drop() {
	if f.stop != nil {
		f.stop()
	}
	drain(f.early)
}

// drain waits for the fetch of c, if any (nil or fetchedAll: none), and
// for every fetch it started, cancelling them.
func drain(c <-chan fetched) {
	for c != nil {
		f, ok := <-c
		if !ok {
			return
		}
		if f.stop != nil {
			f.stop()
		}
		c = f.early
	}
}
