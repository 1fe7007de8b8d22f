package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tethersync/tether/wire"
)

// changes serves a page of the rows changed after a cursor, in commit
// order (wire.Changes).
func (s *Server) changes(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	after, limit, err := pageParams(r.URL.Query())
	if err != nil {
		return nil, err
	}
	echo, err := s.echo(ctx, p, r)
	if err != nil {
		return nil, err
	}
	rows, next, more, err := s.store.Changes(ctx, p, after, limit, s.opts.MaxPageBytes, echo)
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []wire.Row{}
	}
	s.observer().RowsPulled(p.Tenant, len(rows))
	// A scope phase's pages are applied together, with the page after
	// them, as is a version larger than a page.
	phase := next.Phase != PhaseNone
	return wire.Changes{Changes: rows, Cursor: next.String(), More: more, Wait: phase, Partial: more && (phase || next.Partial)}, nil
}

// pageBufs holds the buffers pull pages are encoded into.
var pageBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// writeChanges writes a pull page as JSON (wire.AppendChanges). A page
// with more after it that the client asks for at once (not Wait) goes in
// two writes: where it ends first, sent at once, so that the client asks
// for the next page while this one's rows are encoded; then its rows. A
// page whose rows cannot be encoded (a value that is not a number, such
// as PostgreSQL's NaN) is not written, as json.Encoder would not write
// it, or, when its head went ahead, ends after the head: either way the
// client refuses the answer. (The next page it may have asked for
// meanwhile tells the server it stored this one, as any page asked for
// from the head does: see docs/protocol.md "Pulling".)
func writeChanges(w http.ResponseWriter, c *wire.Changes) {
	buf := pageBufs.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= 16<<20 {
			pageBufs.Put(buf)
		}
	}()
	*buf = wire.AppendChangesHead((*buf)[:0], c)
	if c.More && !c.Wait && len(c.Changes) >= earlyHeadRows {
		if _, err := w.Write(*buf); err != nil {
			return
		}
		http.NewResponseController(w).Flush()
		*buf = (*buf)[:0]
	}
	var err error
	if *buf, err = wire.AppendChangesRows(*buf, c); err == nil {
		w.Write(*buf)
	}
}

// earlyHeadRows is the fewest rows of a page whose head writeChanges
// sends ahead of them: encoding fewer takes less than the flush.
const earlyHeadRows = 100

// pageParams reads the cursor and limit of a page of changes or of a
// snapshot.
func pageParams(q url.Values) (after Cursor, limit int, err error) {
	if after, err = ParseCursor(q.Get("cursor")); err != nil {
		return Cursor{}, 0, err
	}
	limit = wire.DefaultBatchSize
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > wire.MaxBatchSize {
			return Cursor{}, 0, fmt.Errorf("limit %q: want 1 to %d: %w", clip(l), wire.MaxBatchSize, wire.ErrBadRequest)
		}
	}
	return after, limit, nil
}

// echo reads who pulls. A device names the push sessions it committed and
// has not pulled past yet: what it pushed comes back only where the server
// changed it. The pulling device, when it says, and proves it (its key):
// the store records how far it pulled, which decides when tombstones may
// go.
func (s *Server) echo(ctx context.Context, p Principal, r *http.Request) (Echo, error) {
	device, err := s.optionalDevice(ctx, p, r)
	if err != nil {
		return Echo{}, err
	}
	echo := Echo{Device: device}
	if device != "" {
		// Whether a device is active is a question of days: its record
		// need not be written by every pull of a device that syncs often.
		echo.SeenEvery = min(s.opts.Limits.DeviceActivity/100, time.Minute)
	}
	own := r.URL.Query().Get("own")
	if own == "" {
		return echo, nil
	}
	if echo.Device == "" {
		return Echo{}, fmt.Errorf("own sessions without a %s header: %w", wire.HeaderDevice, wire.ErrBadRequest)
	}
	// Counted as entries, not as distinct ids: a list of one id repeated
	// is as long to read.
	if n := strings.Count(own, ",") + 1; n > wire.MaxEchoSessions {
		return Echo{}, fmt.Errorf("own: %d session ids, want at most %d: %w", n, wire.MaxEchoSessions, wire.ErrBadRequest)
	}
	echo.Sessions = map[string]bool{}
	for _, id := range strings.Split(own, ",") {
		if !deviceRE.MatchString(id) {
			return Echo{}, fmt.Errorf("own: malformed session id %q: want %s: %w", clip(id), wire.SessionIDFormat, wire.ErrBadRequest)
		}
		echo.Sessions[id] = true
	}
	return echo, nil
}
