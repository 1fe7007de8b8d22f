package client

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// ErrUnreachable is wrapped in the error of a request that got no
// connection to the server (the dial failed, or took longer than the
// context's connect timeout, WithConnectTimeout: nothing was sent), and of
// a 502 answer without this API's error body (a gateway in front of the
// server could not reach it). A connection is told by the transport's
// net/http/httptrace hooks: through a transport that reports none (not a
// net/http Transport, nor one wrapping it), no error is ErrUnreachable and
// the connect timeout does not apply.
var ErrUnreachable = errors.New("server unreachable")

type connectKey struct{}

// WithConnectTimeout returns a context under which each request must get a
// connection to the server (dial and TLS handshake, or an idle connection
// from the pool) within d, or fail with ErrUnreachable. The rest of the
// request is bounded by Options.Timeout and ctx as usual.
func WithConnectTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, connectKey{}, d)
}

// connWatch tells whether a request got a connection to the server, where
// the transport says so through its net/http/httptrace hooks (traced: it
// asked for a connection), and ends the request with ErrUnreachable when
// it got none within the context's connect timeout (WithConnectTimeout).
type connWatch struct {
	traced, connected atomic.Bool
	cancel            context.CancelCauseFunc
	timer             *time.Timer // nil without a connect timeout
}

// watchConnect returns a context for one request, and its watch.
func watchConnect(ctx context.Context) (context.Context, *connWatch) {
	w := &connWatch{}
	ctx, w.cancel = context.WithCancelCause(ctx)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(string) { w.traced.Store(true) },
		GotConn: func(httptrace.GotConnInfo) { w.connected.Store(true) },
	})
	if d, ok := ctx.Value(connectKey{}).(time.Duration); ok && d > 0 {
		w.timer = time.AfterFunc(d, func() {
			if w.unreached() {
				w.cancel(fmt.Errorf("no connection within %v: %w", d, ErrUnreachable))
			}
		})
	}
	return ctx, w
}

// unreached reports whether the request asked for a connection and has
// none.
func (w *connWatch) unreached() bool { return w.traced.Load() && !w.connected.Load() }

// explain returns err, the error of the request under ctx, wrapping
// ErrUnreachable when the request got no connection.
func (w *connWatch) explain(ctx context.Context, err error) error {
	if !w.unreached() {
		return err
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrUnreachable) {
		return cause
	}
	if ctx.Err() == nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

// stop ends the watch and the request's context, once its answer is read.
func (w *connWatch) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.cancel(nil)
}
