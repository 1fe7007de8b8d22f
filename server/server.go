package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/tethersync/tether/internal/gzpool"
	"github.com/tethersync/tether/wire"
)

// Server is the tether sync server: an http.Handler over a Store. It is
// safe for concurrent use.
type Server struct {
	store    Store
	opts     Options
	resolve  Resolver
	mux      *http.ServeMux
	patterns []string // of the endpoints, for Routes
	limiters *limiters
	// authFails counts failed authentications per client address.
	authFails *limiters
	// streams counts the open event streams per principal.
	streams *streamCounts
	// costs is the budget of Options.MaxCost.
	costs *costs
	// digests keeps table digests for reuse while their tenant's
	// version stays.
	digests *digestCache

	stop     context.CancelFunc // ends the sweep and the capture
	stopped  chan struct{}
	captured chan struct{} // closed when the capture has ended
}

// New returns a server over store, and starts its sweep (see
// Options.SweepInterval) and, with Options.CaptureExternalWrites, the
// capture of writes made directly in the database, which Close stops. It
// installs or drops the store's capture triggers (see Capturer). It returns an error when
// Options.Strategies, Resolvers or Deletes name a table the store does not
// hold, or an unknown strategy or policy (see Options.Check).
func New(store Store, opts Options) (*Server, error) {
	if err := opts.Check(store.Schema()); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	opts = opts.withDefaults()
	if err := store.UseScopes(opts.Scopes, opts.Authorize); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := useCapture(store, opts.CaptureExternalWrites); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		store:     store,
		opts:      opts,
		resolve:   resolver(opts.Strategies, opts.Resolvers, opts.Deletes),
		mux:       http.NewServeMux(),
		limiters:  newLimiters(opts.RateLimit, opts.RateBurst, opts.Now),
		authFails: newLimiters(max(opts.AuthFailures, 0), opts.AuthFailureBurst, opts.Now),
		streams:   &streamCounts{n: map[streamKey]int{}},
		costs:     newCosts(opts.MaxCost, opts.CostWait),
		digests:   newDigestCache(),
		stopped:   make(chan struct{}),
		captured:  make(chan struct{}),
	}
	s.routes()
	ctx, stop := context.WithCancel(context.Background())
	if opts.Observer != nil { // the sweep's and the capture's store calls report to it
		ctx = WithObserver(ctx, opts.Observer)
	}
	s.stop = stop
	if opts.SweepInterval > 0 {
		go s.sweep(ctx, opts.SweepInterval)
	} else {
		close(s.stopped)
	}
	if c, ok := store.(Capturer); ok && opts.CaptureExternalWrites {
		go s.capture(ctx, c, opts.CaptureInterval)
	} else {
		close(s.captured)
	}
	return s, nil
}

// routes registers the endpoints (see the package documentation).
func (s *Server) routes() {
	p := wire.APIPrefix
	s.handle("GET "+p+"/health", http.HandlerFunc(s.health))
	s.handle("POST "+p+"/devices", s.authed(s.registerDevice))
	s.handle("POST "+p+"/sessions", s.authed(s.openSession))
	s.handle("PUT "+p+"/sessions/{session}/batches/{seq}", s.authed(s.stageBatch))
	s.handle("POST "+p+"/sessions/{session}/commit", s.authed(s.commit))
	s.handle("DELETE "+p+"/sessions/{session}", s.authed(s.abandon))
	s.handle("GET "+p+"/changes", s.authed(s.changes))
	s.handle("GET "+p+"/events", http.HandlerFunc(s.events))
	s.handle("GET "+p+"/digest", s.authed(s.digest))
	s.handle("GET "+p+"/snapshot", s.authed(s.snapshot))
	s.handle("POST "+p+"/digest", s.authed(s.digest))
	s.handle("POST "+p+"/write", s.authed(s.writeHTTP))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, fmt.Errorf("no endpoint %s %s: %w", r.Method, r.URL.Path, wire.ErrNotFound))
	})
}

// handle registers an endpoint, and records its pattern for Routes.
func (s *Server) handle(pattern string, h http.Handler) {
	s.patterns = append(s.patterns, pattern)
	s.mux.Handle(pattern, h)
}

// Routes returns the patterns of the endpoints the server serves, such as
// "GET /v1/changes", in the order they were registered (docs/openapi.json
// describes each; a test checks they agree).
func (s *Server) Routes() []string { return slices.Clone(s.patterns) }

// Close stops the server's sweep. It does not close the store.
func (s *Server) Close() error {
	s.stop()
	<-s.stopped
	<-s.captured
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec, body, r := s.track(w, r)
	defer s.done(time.Now(), rec, body, r)
	w = rec
	// The event stream is not compressed: it must reach the client as
	// each event is written.
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") && !strings.HasSuffix(r.URL.Path, "/events") {
		gw := &gzipWriter{ResponseWriter: w}
		defer gw.Close()
		w = gw
	}
	s.mux.ServeHTTP(w, r)
}

// handlerFunc is an endpoint behind authed: it returns the answer to
// write as JSON, or the error for fail.
type handlerFunc func(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error)

// authed authenticates the request and writes the handler's answer as JSON.
func (s *Server) authed(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := &bodyEnd{ReadCloser: r.Body}
		r.Body = body
		p, err := s.authenticate(w, r)
		if err == nil {
			var out any
			if out, err = h(r.Context(), p, w, r); err == nil {
				writeJSON(w, http.StatusOK, out)
				return
			}
		}
		if r.ContentLength != 0 && !body.done {
			// Refused before its body was read (a device without its
			// key): net/http would wait for the rest of the body, however
			// slow, before answering. The connection closes instead.
			w.Header().Set("Connection", "close")
		}
		s.fail(w, r, err)
	})
}

// bodyEnd tells whether a request body was read to its end.
type bodyEnd struct {
	io.ReadCloser
	done bool
}

func (b *bodyEnd) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done = true
	}
	return n, err
}

// health answers that the server is up; it needs no credentials.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, wire.Health{Status: "ok"})
}

// writeJSON writes v as a JSON body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if c, ok := v.(wire.Changes); ok { // the bulk of a pull: encoded without reflection
		writeChanges(w, &c)
		return
	}
	json.NewEncoder(w).Encode(v)
}

// gzipWriter compresses a response.
type gzipWriter struct {
	http.ResponseWriter
	zw *gzip.Writer
}

func (g *gzipWriter) WriteHeader(status int) {
	g.Header().Set("Content-Encoding", "gzip")
	g.Header().Del("Content-Length")
	g.Header().Add("Vary", "Accept-Encoding")
	g.zw = gzpool.Get(g.ResponseWriter)
	g.ResponseWriter.WriteHeader(status)
}

func (g *gzipWriter) Write(b []byte) (int, error) {
	if g.zw == nil {
		g.WriteHeader(http.StatusOK)
	}
	return g.zw.Write(b)
}

// FlushError sends what was written so far: the compressed bytes, then
// the connection's buffer.
func (g *gzipWriter) FlushError() error {
	if g.zw != nil {
		if err := g.zw.Flush(); err != nil {
			return err
		}
	}
	return http.NewResponseController(g.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection: the body's
// read deadline (Options.BodyTimeout) holds for a client that accepts
// gzip too.
func (g *gzipWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func (g *gzipWriter) Close() error {
	if g.zw == nil {
		return nil
	}
	err := g.zw.Close()
	gzpool.Put(g.zw)
	g.zw = nil
	return err
}
