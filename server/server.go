package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"golang.org/x/time/rate"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/gzpool"
	"github.com/tethersync/tether/wire"
)

// DefaultMaxBodyBytes is the default limit on a request body, after
// decompression.
const DefaultMaxBodyBytes = 32 << 20

// Options configures a Server. The zero value works but authenticates
// nobody: set Auth.
type Options struct {
	// Auth authenticates every request but health. When nil, every other
	// request is refused with 401.
	Auth Authenticator
	// Strategies sets the conflict strategy per table. Tables not listed
	// use LastWriterWins.
	Strategies map[string]Strategy
	// Resolvers sets a Go function per table that decides its conflicts
	// instead of its strategy: keep either row, or merge them.
	Resolvers map[string]ResolveFunc
	// Deletes sets per table how a delete settles against an update.
	// Default NewerWins.
	Deletes map[string]DeletePolicy
	// MaxBodyBytes limits request bodies, after decompression; larger
	// bodies get 413. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives one line per failed request. Default slog.Default().
	Logger *slog.Logger
	// Limits bounds the push sessions a device may keep open.
	Limits Limits
	// MaxBatchRows limits the rows of one pushed batch; larger batches get
	// 413, and the client halves its batch. Default and most
	// wire.MaxBatchSize.
	MaxBatchRows int
	// RateLimit is the sustained number of requests per second one bearer
	// token may make, with bursts of RateBurst (default 2 × RateLimit,
	// at least 1). Requests over it get 429 with Retry-After, which the
	// client honours. Zero means no limit.
	RateLimit rate.Limit
	RateBurst int
	// MaxValueBytes limits one column value of a pushed row, while it is
	// read; larger values get 413. Default DefaultMaxValueBytes.
	MaxValueBytes int
	// BodyTimeout is how long a request body may take to arrive; a slower
	// one is cut off. Default 60s.
	BodyTimeout time.Duration
	// MaxPageBytes bounds a pull page's rows, as their values' sizes add
	// up: a page holds at least one row, and stops before the row that
	// would take it past the bound. Default DefaultMaxPageBytes.
	MaxPageBytes int
	// MaxClockSkew is how far ahead of the server's clock a pushed row's
	// clock stamp may be: a later stamp is replaced, at commit, by one of
	// the server's clock (its device part kept), so that no device's wrong
	// clock wins last-writer-wins for long or poisons other devices'
	// clocks. Default DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// AuthFailures is the number of failed authentications per second one
	// client address may make, with bursts of AuthFailureBurst (default
	// 20); past it, requests from that address get 429 before their token
	// is looked at. Default 1; negative means no limit.
	AuthFailures     rate.Limit
	AuthFailureBurst int
	// SweepInterval is how often the server discards what has expired in
	// a store that is a Sweeper (sessions idle past Limits.SessionIdle, and
	// their staged rows), a bounded amount each time, whether or not their
	// devices come back. Default 1 minute; negative turns it off. Close
	// stops it.
	SweepInterval time.Duration
}

// Defaults of Options.
const (
	DefaultMaxValueBytes = 4 << 20
	DefaultMaxPageBytes  = 8 << 20
	DefaultMaxClockSkew  = 5 * time.Minute
)

// Check returns an error naming the first table of Strategies, Resolvers
// or Deletes that schema lacks, or the first unknown strategy or delete
// policy.
func (o Options) Check(schema entity.Schema) error {
	for _, table := range slices.Sorted(maps.Keys(o.Strategies)) {
		if schema.Table(table) == nil {
			return fmt.Errorf("strategy for unknown table %q", table)
		}
		if err := validStrategy(o.Strategies[table]); err != nil {
			return fmt.Errorf("table %q: %w", table, err)
		}
	}
	for _, table := range slices.Sorted(maps.Keys(o.Resolvers)) {
		if schema.Table(table) == nil {
			return fmt.Errorf("resolver for unknown table %q", table)
		}
	}
	for _, table := range slices.Sorted(maps.Keys(o.Deletes)) {
		if schema.Table(table) == nil {
			return fmt.Errorf("delete policy for unknown table %q", table)
		}
		if d := o.Deletes[table]; d != NewerWins && d != DeleteAlwaysWins {
			return fmt.Errorf("table %q: unknown delete policy %q", table, d)
		}
	}
	return nil
}

// Server is the tether sync server: an http.Handler over a Store. It is
// safe for concurrent use.
type Server struct {
	store    Store
	opts     Options
	resolve  Resolver
	mux      *http.ServeMux
	limiters *limiters
	// authFails counts failed authentications per client address.
	authFails *limiters

	stop    context.CancelFunc // ends the sweep
	stopped chan struct{}
}

// New returns a server over store. It returns an error when
// Options.Strategies, Resolvers or Deletes name a table the store does not
// hold, or an unknown strategy or policy (see Options.Check).
func New(store Store, opts Options) (*Server, error) {
	if err := opts.Check(store.Schema()); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Limits = opts.Limits.WithDefaults()
	if opts.MaxBatchRows <= 0 || opts.MaxBatchRows > wire.MaxBatchSize {
		opts.MaxBatchRows = wire.MaxBatchSize
	}
	if opts.RateLimit > 0 && opts.RateBurst <= 0 {
		opts.RateBurst = max(1, int(2*opts.RateLimit))
	}
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = DefaultMaxValueBytes
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = 60 * time.Second
	}
	if opts.MaxPageBytes <= 0 {
		opts.MaxPageBytes = DefaultMaxPageBytes
	}
	if opts.MaxClockSkew <= 0 {
		opts.MaxClockSkew = DefaultMaxClockSkew
	}
	if opts.AuthFailures == 0 {
		opts.AuthFailures = 1
	}
	if opts.AuthFailureBurst <= 0 {
		opts.AuthFailureBurst = 20
	}
	s := &Server{store: store, opts: opts, resolve: resolver(opts.Strategies, opts.Resolvers, opts.Deletes), mux: http.NewServeMux(),
		limiters: newLimiters(opts.RateLimit, opts.RateBurst), authFails: newLimiters(max(opts.AuthFailures, 0), opts.AuthFailureBurst),
		stopped: make(chan struct{})}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = time.Minute
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	if opts.SweepInterval > 0 {
		go s.sweep(ctx, store, opts.SweepInterval)
	} else {
		close(s.stopped)
	}
	p := wire.APIPrefix
	s.mux.HandleFunc("GET "+p+"/health", s.health)
	s.mux.Handle("POST "+p+"/devices", s.authed(s.registerDevice))
	s.mux.Handle("POST "+p+"/sessions", s.authed(s.openSession))
	s.mux.Handle("PUT "+p+"/sessions/{session}/batches/{seq}", s.authed(s.stageBatch))
	s.mux.Handle("POST "+p+"/sessions/{session}/commit", s.authed(s.commit))
	s.mux.Handle("GET "+p+"/changes", s.authed(s.changes))
	s.mux.HandleFunc("GET "+p+"/events", s.events)
	s.mux.Handle("GET "+p+"/digest", s.authed(s.digest))
	s.mux.Handle("GET "+p+"/snapshot", s.authed(s.snapshot))
	s.mux.Handle("POST "+p+"/digest", s.authed(s.digest))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, fmt.Errorf("no endpoint %s %s: %w", r.Method, r.URL.Path, wire.ErrNotFound))
	})
	return s, nil
}

// Close stops the server's sweep. It does not close the store.
func (s *Server) Close() error {
	s.stop()
	<-s.stopped
	return nil
}

// sweepBatch is the most sessions one sweep discards: a sweep is one
// short transaction, and the next comes soon.
const sweepBatch = 100

// sweep discards what has expired every interval until ctx ends.
func (s *Server) sweep(ctx context.Context, sw Store, interval time.Duration) {
	defer close(s.stopped)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := sw.Sweep(ctx, s.opts.Limits, sweepBatch)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Error("sweep", "err", err)
		} else if n > 0 {
			s.opts.Logger.Info("sweep: discarded expired sessions", "sessions", n)
		}
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The event stream is not compressed: it must reach the client as
	// each event is written.
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") && !strings.HasSuffix(r.URL.Path, "/events") {
		gw := &gzipWriter{ResponseWriter: w}
		defer gw.Close()
		w = gw
	}
	s.mux.ServeHTTP(w, r)
}

type handlerFunc func(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error)

// authed authenticates the request and writes the handler's answer as JSON.
func (s *Server) authed(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(w, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ctx := context.WithValue(r.Context(), principalKey{}, p)
		out, err := h(ctx, p, w, r.WithContext(ctx))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// authenticate finds the request's principal and applies the rate limit;
// the error is ready for fail.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Principal, error) {
	if s.opts.Auth == nil {
		return Principal{}, fmt.Errorf("server has no authenticator configured: %w", wire.ErrUnauthorized)
	}
	// Guessing tokens: an address whose authentications failed too often
	// is refused before its token is looked at.
	addr := clientAddr(r)
	if wait := s.authFails.empty(addr); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return Principal{}, fmt.Errorf("too many failed authentications from this address; retry in %ds: %w", secs, wire.ErrRateLimited)
	}
	p, err := s.opts.Auth.Authenticate(r)
	if err != nil {
		if !errors.Is(err, wire.ErrInternal) {
			s.authFails.take(addr)
		}
		if !errors.Is(err, wire.ErrUnauthorized) && !errors.Is(err, wire.ErrInternal) {
			err = fmt.Errorf("%v: %w", err, wire.ErrUnauthorized)
		}
		return Principal{}, err
	}
	if p.Tenant == "" {
		return Principal{}, fmt.Errorf("credentials name no tenant: %w", wire.ErrForbidden)
	}
	if t := r.Header.Get(wire.HeaderTenant); t != "" && t != p.Tenant {
		return Principal{}, fmt.Errorf("the device's database belongs to tenant %q and the credentials are for %q: %w", t, p.Tenant, wire.ErrForbidden)
	}
	if wait := s.limiters.wait(r); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return Principal{}, fmt.Errorf("more than %v requests a second with this token; retry in %ds: %w", s.opts.RateLimit, secs, wire.ErrRateLimited)
	}
	return p, nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, wire.Health{Status: "ok"})
}

// clientAddr is the address of r's client: the connection's host, not a
// forwarded-for header, which any client can write.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// seqRE is a batch number: digits, without sign or leading zeros.
var seqRE = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})$`)

var deviceRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

func deviceOf(r *http.Request) (string, error) {
	d := r.Header.Get(wire.HeaderDevice)
	if !deviceRE.MatchString(d) {
		return "", fmt.Errorf("missing or malformed %s header: %w", wire.HeaderDevice, wire.ErrBadRequest)
	}
	return d, nil
}

func (s *Server) registerDevice(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	var d wire.Device
	if err := s.decode(w, r, &d); err != nil {
		return nil, err
	}
	if !deviceRE.MatchString(d.Device) {
		return nil, fmt.Errorf("malformed device id %q: %w", d.Device, wire.ErrBadRequest)
	}
	if d.Tenant != "" && d.Tenant != p.Tenant {
		return nil, fmt.Errorf("the device's database belongs to tenant %q and the credentials are for %q: %w", d.Tenant, p.Tenant, wire.ErrForbidden)
	}
	if d.Schema != nil {
		if err := checkDeviceSchema(s.store.Schema(), *d.Schema); err != nil {
			return nil, err
		}
	}
	if err := s.store.RegisterDevice(ctx, p, d.Device, d.Schema); err != nil {
		return nil, err
	}
	return wire.Device{Device: d.Device, Tenant: p.Tenant, User: p.User, TenantChecked: true}, nil
}

func (s *Server) openSession(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	device, err := deviceOf(r)
	if err != nil {
		return nil, err
	}
	var req wire.Session
	if err := s.decode(w, r, &req); err != nil {
		return nil, err
	}
	if req.Session != "" && !deviceRE.MatchString(req.Session) {
		return nil, fmt.Errorf("malformed session id %q (want 1 to 64 letters, digits and dashes): %w", req.Session, wire.ErrBadRequest)
	}
	id, err := s.store.OpenSession(ctx, p, device, req.Session, s.opts.Limits)
	if err != nil {
		return nil, err
	}
	return wire.Session{Session: id}, nil
}

func (s *Server) stageBatch(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	device, err := deviceOf(r)
	if err != nil {
		return nil, err
	}
	seq, err := strconv.Atoi(r.PathValue("seq"))
	if err != nil || !seqRE.MatchString(r.PathValue("seq")) {
		return nil, fmt.Errorf("malformed batch number %q: %w", r.PathValue("seq"), wire.ErrBadRequest)
	}
	params, err := batchParams(r)
	if err != nil {
		return nil, err
	}
	session := r.PathValue("session")
	if params.Open && !deviceRE.MatchString(session) {
		return nil, fmt.Errorf("malformed session id %q (want 1 to 64 letters, digits and dashes): %w", session, wire.ErrBadRequest)
	}
	// The digest of a batch that commits tells the same request delivered
	// twice (a proxy that retries) from another (Store.Push).
	var digest hash.Hash
	if params.Commit {
		digest = sha256.New()
	}
	b, err := s.decodeBatch(w, r, digest)
	if err != nil {
		return nil, err
	}
	if err := validateRows(s.store.Schema(), b.Rows, stamping{device: device, now: time.Now(), skew: s.opts.MaxClockSkew}); err != nil {
		return nil, fmt.Errorf("batch %d: %w", seq, err)
	}
	if len(b.Rows) > s.opts.MaxBatchRows {
		return nil, fmt.Errorf("batch %d has %d rows, more than the limit of %d: %w", seq, len(b.Rows), s.opts.MaxBatchRows, wire.ErrTooLarge)
	}
	o := PushOptions{Open: params.Open, Attempt: params.Attempt, Resolve: s.resolve, Limits: s.opts.Limits}
	if params.Commit {
		o.Commit = &LastBatch{Seq: seq, Digest: hex.EncodeToString(digest.Sum(nil))}
	}
	c, err := s.store.Push(ctx, p, device, session, seq, b.Rows, o)
	if err != nil {
		return nil, err
	}
	return wire.BatchAck{Seq: seq, Staged: len(b.Rows), Commit: c, Protocol: wire.ProtocolOneRequest}, nil
}

// batchParams reads a batch's query parameters: open and commit, each
// absent or "1", and attempt, a positive number.
func batchParams(r *http.Request) (wire.BatchParams, error) {
	var p wire.BatchParams
	for name, vals := range r.URL.Query() {
		if name == wire.BatchAttempt {
			n, err := strconv.ParseInt(strings.Join(vals, ","), 10, 64)
			if err != nil || n < 1 || !seqRE.MatchString(vals[0]) {
				return p, fmt.Errorf("batch parameter %s=%q: want a positive number once: %w", name, strings.Join(vals, ","), wire.ErrBadRequest)
			}
			p.Attempt = n
			continue
		}
		if len(vals) != 1 || vals[0] != "1" {
			return p, fmt.Errorf("batch parameter %s=%q: want %s=1 once: %w", name, strings.Join(vals, ","), name, wire.ErrBadRequest)
		}
		switch name {
		case wire.BatchOpen:
			p.Open = true
		case wire.BatchCommit:
			p.Commit = true
		default:
			return p, fmt.Errorf("unknown batch parameter %q (want %s, %s or %s): %w", name, wire.BatchOpen, wire.BatchCommit, wire.BatchAttempt, wire.ErrBadRequest)
		}
	}
	return p, nil
}

func (s *Server) commit(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	device, err := deviceOf(r)
	if err != nil {
		return nil, err
	}
	var req wire.CommitRequest // {} for a plain commit
	if err := s.decode(w, r, &req); err != nil {
		return nil, err
	}
	if st := req.Settle; st != nil && (st.Seq < 0 || len(st.Digest) != 64) {
		return nil, fmt.Errorf("settle: batch %d with digest %q (want a batch number and a hex SHA-256): %w", st.Seq, st.Digest, wire.ErrBadRequest)
	}
	return s.store.Commit(ctx, p, device, r.PathValue("session"), s.resolve, s.opts.Limits, req.Settle)
}

func (s *Server) changes(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	after, err := ParseCursor(q.Get("cursor"))
	if err != nil {
		return nil, err
	}
	limit := wire.DefaultBatchSize
	if l := q.Get("limit"); l != "" {
		limit, err = strconv.Atoi(l)
		if err != nil || limit < 1 || limit > wire.MaxBatchSize {
			return nil, fmt.Errorf("limit %q: want 1 to %d: %w", l, wire.MaxBatchSize, wire.ErrBadRequest)
		}
	}
	// A device names the push sessions it committed and has not pulled
	// past yet: what it pushed comes back only where the server changed it.
	// The pulling device, when it says: the store records how far it
	// pulled, which decides when tombstones may go.
	var echo Echo
	if r.Header.Get(wire.HeaderDevice) != "" {
		device, err := deviceOf(r)
		if err != nil {
			return nil, err
		}
		echo.Device = device
		// Whether a device is active is a question of days: its record
		// need not be written by every pull of a device that syncs often.
		echo.SeenEvery = min(s.opts.Limits.DeviceActivity/100, time.Minute)
	}
	if own := q.Get("own"); own != "" {
		if echo.Device == "" {
			return nil, fmt.Errorf("own sessions without a %s header: %w", wire.HeaderDevice, wire.ErrBadRequest)
		}
		echo.Sessions = map[string]bool{}
		for _, id := range strings.Split(own, ",") {
			if !deviceRE.MatchString(id) || len(echo.Sessions) == wire.MaxEchoSessions {
				return nil, fmt.Errorf("own: want at most %d session ids: %w", wire.MaxEchoSessions, wire.ErrBadRequest)
			}
			echo.Sessions[id] = true
		}
	}
	rows, next, more, err := s.store.Changes(ctx, p, after, limit, s.opts.MaxPageBytes, echo)
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []wire.Row{}
	}
	return wire.Changes{Changes: rows, Cursor: next.String(), More: more}, nil
}

// snapshot serves a page of the tenant's live rows (wire.Snapshot).
func (s *Server) snapshot(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	after, err := ParseCursor(q.Get("cursor"))
	if err != nil {
		return nil, err
	}
	limit := wire.DefaultBatchSize
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > wire.MaxBatchSize {
			return nil, fmt.Errorf("limit %q: want 1 to %d: %w", l, wire.MaxBatchSize, wire.ErrBadRequest)
		}
	}
	return s.store.Snapshot(ctx, p, after, limit, s.opts.MaxPageBytes)
}

func (s *Server) digest(ctx context.Context, p Principal, w http.ResponseWriter, r *http.Request) (any, error) {
	var req wire.DigestRequest
	if r.Method == http.MethodPost {
		if err := s.decode(w, r, &req); err != nil {
			return nil, err
		}
		for name := range req.Columns {
			if s.store.Schema().Table(name) == nil {
				return nil, fmt.Errorf("digest: unknown table %q: %w", name, wire.ErrBadRequest)
			}
		}
	}
	var out wire.Digests
	for _, t := range s.store.Schema().Tables {
		var cols []string
		if req.Columns != nil {
			if cols = req.Columns[t.Name]; cols == nil {
				continue // not one of the device's tables
			}
		}
		td, err := s.store.Digest(ctx, p, t.Name, cols)
		if err != nil {
			return nil, err
		}
		out.Tables = append(out.Tables, td)
	}
	return out, nil
}

// body returns the request body, decompressed, refusing more than
// MaxBodyBytes of it after decompression, with a deadline of BodyTimeout
// for reading it all. A body must be application/json. The caller calls
// finish with whether it read the body whole: the deadline is then lifted,
// so that it does not outlive the request on a kept-alive connection;
// otherwise the connection closes after the answer.
func (s *Server) body(w http.ResponseWriter, r *http.Request) (io.Reader, func(ok bool), error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, nil, fmt.Errorf("body of type %q, want application/json: %w", r.Header.Get("Content-Type"), wire.ErrUnsupportedMedia)
	}
	// A slow body holds a connection and a goroutine: it has BodyTimeout.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
	closeZ := func() {}
	finish := func(ok bool) {
		closeZ()
		if ok {
			_ = rc.SetReadDeadline(time.Time{})
		} else {
			w.Header().Set("Connection", "close")
		}
	}
	var body io.Reader = r.Body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			finish(false)
			return nil, nil, fmt.Errorf("malformed gzip body: %v: %w", err, wire.ErrBadRequest)
		}
		body, closeZ = zr, func() { zr.Close() }
	default:
		finish(false)
		return nil, nil, fmt.Errorf("unknown Content-Encoding %q (gzip or none): %w", enc, wire.ErrUnsupportedMedia)
	}
	return &maxReader{r: body, left: s.opts.MaxBodyBytes, max: s.opts.MaxBodyBytes}, finish, nil
}

// maxReader fails with wire.ErrTooLarge once more than max bytes were read.
type maxReader struct {
	r         io.Reader
	left, max int64
}

func (m *maxReader) Read(p []byte) (int, error) {
	if m.left < 0 {
		return 0, fmt.Errorf("body larger than %d bytes (MaxBodyBytes, after decompression): %w", m.max, wire.ErrTooLarge)
	}
	if int64(len(p)) > m.left+1 {
		p = p[:m.left+1]
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	if m.left < 0 {
		return n, fmt.Errorf("body larger than %d bytes (MaxBodyBytes, after decompression): %w", m.max, wire.ErrTooLarge)
	}
	return n, err
}

// decode reads a small JSON body strictly: unknown fields and anything but
// white space after the value are refused.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, finish, err := s.body(w, r)
	if err != nil {
		return err
	}
	ok := false
	defer func() { finish(ok) }()
	dec := json.NewDecoder(body)
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, wire.ErrTooLarge) {
			return err
		}
		return fmt.Errorf("malformed JSON body: %v: %w", err, wire.ErrBadRequest)
	}
	rest, err := io.ReadAll(io.MultiReader(dec.Buffered(), body))
	if err != nil {
		return badBody(readError{err})
	}
	if len(bytes.TrimLeft(rest, " \t\r\n")) > 0 {
		return fmt.Errorf("malformed JSON body: data after the value: %w", wire.ErrBadRequest)
	}
	ok = true
	return nil
}

// decodeBatch reads a pushed batch (see decodeBatch in decode.go), and
// writes the body, decompressed, to digest when it is not nil.
func (s *Server) decodeBatch(w http.ResponseWriter, r *http.Request, digest io.Writer) (wire.Batch, error) {
	body, finish, err := s.body(w, r)
	if err != nil {
		return wire.Batch{}, err
	}
	if digest != nil {
		body = io.TeeReader(body, digest)
	}
	b, err := decodeBatch(body, batchLimits{maxRows: s.opts.MaxBatchRows, maxValue: s.opts.MaxValueBytes})
	finish(err == nil)
	return b, err
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, status := wire.Code(err)
	msg := err.Error()
	if status >= 500 {
		s.opts.Logger.Error("tether request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal server error"
	}
	writeJSON(w, status, wire.ErrorBody{Error: wire.ErrorDetail{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
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

func (g *gzipWriter) Close() error {
	if g.zw == nil {
		return nil
	}
	err := g.zw.Close()
	gzpool.Put(g.zw)
	g.zw = nil
	return err
}
