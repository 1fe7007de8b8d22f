package push

import (
	"context"

	"github.com/tethersync/tether/localdb"
)

// reader reads a push's batches ahead: the batch after the one on the
// wire is read while it is sent. The reads only look at rows after the
// batch being sent, so they do not depend on the server's answer; and the
// batch after the one to send must be read before it goes, to know whether
// it is the last.
//
// A reader is used by one goroutine; wait must be called before the store
// is left to others.
type reader struct {
	store Store
	size  int         // rows per batch
	ahead <-chan read // the read under way, or closed
}

type read struct {
	batch localdb.DirtyBatch
	err   error
}

// closed is a channel with nothing more to receive: the state of
// reader.ahead when no read is under way.
var closed = func() chan read { c := make(chan read); close(c); return c }()

func newReader(store Store, size int) *reader {
	return &reader{store: store, size: size, ahead: closed}
}

// at reads the batch at pos, once the read under way is over, and starts
// reading the one after it.
func (r *reader) at(ctx context.Context, pos localdb.PushPos) (localdb.DirtyBatch, error) {
	<-r.ahead
	r.ahead = r.start(ctx, pos)
	return r.next(ctx)
}

// next returns the batch read ahead, and starts reading the one after it
// unless it is empty (there is no more).
func (r *reader) next(ctx context.Context) (localdb.DirtyBatch, error) {
	got := <-r.ahead
	r.ahead = closed
	if got.err == nil && len(got.batch.Rows) > 0 {
		r.ahead = r.start(ctx, got.batch.Next)
	}
	return got.batch, got.err
}

// halve halves the batch size, down to one row, for the reads to come.
func (r *reader) halve() { r.size = max(1, r.size/2) }

// wait waits for the read under way, if any: no read is left running on
// the store.
func (r *reader) wait() { <-r.ahead }

// start reads the batch at pos in the background.
func (r *reader) start(ctx context.Context, pos localdb.PushPos) <-chan read {
	out := make(chan read, 1)
	size := r.size // halve may change it while the read runs
	go func() {
		b, err := r.store.NextDirty(ctx, pos, size)
		out <- read{b, err}
	}()
	return out
}
