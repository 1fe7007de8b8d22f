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
	// ForgetOwn.
	OwnSessions(ctx context.Context) ([]string, int64, error)
	// ForgetOwn forgets the own sessions up to mark, once a pull passed
	// them.
	ForgetOwn(ctx context.Context, mark int64) error
	// Learned returns, once each, the conflicts the store recorded in its
	// conflict log while it applied rows (see localdb.Syncer.Learned).
	Learned() []wire.Conflict
}

// Transport is what the pull engine needs of the server; *client.Client
// implements it.
type Transport interface {
	// Changes returns up to limit changes after cursor, passing over the
	// rows device pushed in the sessions own that the server kept as
	// pushed.
	Changes(ctx context.Context, device, cursor string, limit int, own []string) (wire.Changes, error)
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
// overlap; at most two pages are held in memory.
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
	next := e.fetch(ctx, device, cursor, own)
	defer func() {
		cancel()
		<-next // never leave a fetch running
	}()
	for {
		f := <-next
		next = fetchedAll
		if f.err != nil {
			return res, fmt.Errorf("pull after %q: %w", cursor, f.err)
		}
		ch := f.page
		// A page may be empty when it held only this device's echo: the
		// cursor still moves.
		more := ch.More && (len(ch.Changes) > 0 || ch.Cursor != cursor)
		if more && !ch.Wait {
			next = e.fetch(ctx, device, ch.Cursor, own)
		}
		if ch.Partial && more {
			// Part of a version: set aside until the version is whole,
			// so that the app never sees half a session (G4).
			if err := e.store.StashChanges(ctx, ch); err != nil {
				return res, fmt.Errorf("pull after %q: %w", cursor, err)
			}
		} else {
			n, err := e.store.ApplyChanges(ctx, ch.Changes, ch.Cursor)
			if err != nil {
				return res, fmt.Errorf("pull after %q: %w", cursor, err)
			}
			res.Applied += n
			res.Conflicts = append(res.Conflicts, e.store.Learned()...)
		}
		e.counted(&res, ch.Changes)
		cursor = ch.Cursor
		if more && ch.Wait { // stored: the server may now count on it
			next = e.fetch(ctx, device, ch.Cursor, own)
		}
		if !more {
			if err := e.store.ForgetOwn(ctx, mark); err != nil { // passed: the next pull starts after them
				return res, fmt.Errorf("pull: %w", err)
			}
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
}

// fetchedAll is a channel with nothing more to receive: the state of a
// pull's next fetch when none is under way.
var fetchedAll = func() chan fetched { c := make(chan fetched); close(c); return c }()

// fetch requests the page after cursor in the background; the caller
// receives its answer before it returns.
func (e *Engine) fetch(ctx context.Context, device, cursor string, own []string) <-chan fetched {
	out := make(chan fetched, 1)
	go func() {
		ch, err := e.tr.Changes(ctx, device, cursor, e.opts.PageSize, own)
		out <- fetched{ch, err}
	}()
	return out
}
