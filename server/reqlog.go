package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// request is what a request's handlers learn about it for its log line
// and its Observer.Request: who it is, and how it failed.
type request struct {
	tenant, device string
	code           string // wire error code of a failure
	err            error
}

// requestKey carries a *request in a request's context.
type requestKey struct{}

// noted returns the request record of ctx, or a throwaway one.
func noted(ctx context.Context) *request {
	if n, ok := ctx.Value(requestKey{}).(*request); ok {
		return n
	}
	return &request{}
}

// recorder records the status and the bytes of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += int64(n)
	return n, err
}

// Flush lets an event stream reach the client as it is written.
func (rec *recorder) Flush() {
	if f, ok := rec.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// countedBody counts the bytes read of a request body.
type countedBody struct {
	io.ReadCloser
	n int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// track starts the record of a request: the writer to answer through,
// and the request carrying the record and, when Options.Observer is set,
// the observer for the store.
func (s *Server) track(w http.ResponseWriter, r *http.Request) (*recorder, *countedBody, *http.Request) {
	ctx := context.WithValue(r.Context(), requestKey{}, &request{})
	if s.opts.Observer != nil {
		ctx = WithObserver(ctx, s.opts.Observer)
	}
	r = r.WithContext(ctx)
	body := &countedBody{ReadCloser: r.Body}
	r.Body = body
	return &recorder{ResponseWriter: w}, body, r
}

// done logs the answered request (Options.LogRequests) and tells the
// observer. r is the request as the mux routed it (its Pattern set).
func (s *Server) done(start time.Time, rec *recorder, body *countedBody, r *http.Request) {
	n := noted(r.Context())
	info := RequestInfo{Method: r.Method, Route: r.Pattern, Status: rec.status, Code: n.code, Duration: time.Since(start),
		Tenant: n.tenant, Device: n.device, BytesIn: body.n, BytesOut: rec.bytes, Err: n.err}
	if info.Status == 0 {
		info.Status = http.StatusOK
	}
	if info.Route == "" {
		info.Route = "/"
	}
	s.logRequest(r, info)
	if s.opts.Observer != nil {
		s.opts.Observer.Request(info)
	}
}

// logRequest writes the request's line to Options.Logger: Info for 2xx
// and 3xx, Warn for 4xx, Error for 5xx; without Options.LogRequests, only
// the lines of server errors (5xx).
func (s *Server) logRequest(r *http.Request, info RequestInfo) {
	level := slog.LevelInfo
	switch {
	case info.Status >= 500:
		level = slog.LevelError
	case info.Status >= 400:
		level = slog.LevelWarn
	}
	if !s.opts.LogRequests && level < slog.LevelError {
		return
	}
	ctx := r.Context()
	if !s.opts.Logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", info.Method), slog.String("route", info.Route), slog.String("path", r.URL.Path),
		slog.Int("status", info.Status), slog.Duration("duration", info.Duration),
		slog.String("tenant", info.Tenant), slog.String("device", info.Device),
		slog.Int64("bytes_in", info.BytesIn), slog.Int64("bytes_out", info.BytesOut),
	}
	if info.Code != "" {
		attrs = append(attrs, slog.String("code", info.Code))
	}
	if info.Err != nil {
		attrs = append(attrs, slog.Any("err", info.Err))
	}
	s.opts.Logger.LogAttrs(ctx, level, "tether request", attrs...)
}
