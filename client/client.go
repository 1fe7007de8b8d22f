package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/klauspost/compress/gzip"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/gzpool"
	"github.com/tethersync/tether/wire"
)

// TokenSource supplies bearer tokens that change over time, such as
// short-lived JSON Web Tokens from an identity provider. It has the shape
// of golang.org/x/oauth2's TokenSource, with a context and a plain string;
// wrap an oauth2.TokenSource in a TokenFunc to use one.
type TokenSource interface {
	// Token returns a token to send as "Authorization: Bearer <token>".
	// The client calls it for its first request that needs a token and
	// keeps the answer for every request and the event stream, until the
	// server refuses it with 401: then the client calls Token again, once,
	// and sends the request again with the new token. Token must then
	// return a new token, not the one refused. Calls are serialized.
	Token(ctx context.Context) (string, error)
}

// TokenFunc adapts a function to TokenSource.
type TokenFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// Options configures a Client. The zero value works.
type Options struct {
	// Token is sent as "Authorization: Bearer <Token>". It never changes;
	// for tokens that expire, set TokenSource instead.
	Token string
	// TokenSource, when set, supplies the bearer token (Token is then
	// ignored), and a new one each time the server answers 401 to a
	// request: the request is sent once more with the new token before
	// the 401 is returned.
	TokenSource TokenSource
	// Timeout bounds each request, including reading the answer.
	// Default 60s.
	Timeout time.Duration
	// UserAgent is sent with every request. Default "tether-client/1".
	UserAgent string
	// Transport carries the requests: proxies, custom TLS, fault injection
	// in tests. Default a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// DisableGzip sends request bodies uncompressed and asks for
	// uncompressed answers.
	DisableGzip bool
}

// Client talks to one tether server. It is safe for concurrent use.
type Client struct {
	r     *resty.Client
	gzip  bool
	sent  atomic.Int64
	recvd atomic.Int64

	// For the event stream, which outlives Options.Timeout.
	base  string
	agent string
	live  *http.Client

	tenant atomic.Pointer[string] // sent as wire.HeaderTenant, when set

	token string      // static token
	src   TokenSource // or the source of tokens
	tokMu sync.Mutex  // serializes calls of src
	tok   string      // src's current token; "" when none is held
}

// New returns a client for the server at baseURL, such as
// "https://sync.example.com".
func New(baseURL string, opts Options) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "tether-client/1"
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	r := resty.New().
		SetBaseURL(baseURL+wire.APIPrefix).
		SetTimeout(opts.Timeout).
		SetTransport(opts.Transport).
		SetHeader("User-Agent", opts.UserAgent).
		SetRetryCount(0)
	// An explicit Accept-Encoding stops net/http from asking for gzip on
	// its own and decompressing out of sight: the client decompresses
	// answers itself, after counting the bytes that crossed the wire.
	if opts.DisableGzip {
		r.SetHeader("Accept-Encoding", "identity")
	} else {
		r.SetHeader("Accept-Encoding", "gzip")
	}
	return &Client{r: r, gzip: !opts.DisableGzip, base: baseURL + wire.APIPrefix, token: opts.Token, agent: opts.UserAgent,
		live: &http.Client{Transport: opts.Transport}, src: opts.TokenSource}
}

// bearer returns the token to send: the static one, or the source's
// current one, fetched when none is held.
func (c *Client) bearer(ctx context.Context) (string, error) {
	if c.src == nil {
		return c.token, nil
	}
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.tok == "" {
		tok, err := c.src.Token(ctx)
		if err != nil {
			return "", fmt.Errorf("token source: %w", err)
		}
		if tok == "" {
			return "", errors.New("token source returned an empty token")
		}
		c.tok = tok
	}
	return c.tok, nil
}

// refused drops tok, which the server refused, so that the next request
// gets a new one from the source. It reports whether a new token can be
// had, that is whether a source is set.
func (c *Client) refused(tok string) bool {
	if c.src == nil || tok == "" {
		return false
	}
	c.tokMu.Lock()
	if c.tok == tok { // not replaced by a concurrent request already
		c.tok = ""
	}
	c.tokMu.Unlock()
	return true
}

// unauthorized reports whether err is a 401 answer.
func unauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusUnauthorized
}

// withToken runs send with the current token and, when the server refuses
// it with 401 and a token source is set, once more with a new token.
func (c *Client) withToken(ctx context.Context, op string, send func(token string) error) error {
	for attempt := 0; ; attempt++ {
		tok, err := c.bearer(ctx)
		if err != nil {
			return &Error{Op: op, Err: err}
		}
		err = send(tok)
		// A refused token is never sent again; a request gets one more try.
		if unauthorized(err) && c.refused(tok) && attempt == 0 {
			continue
		}
		return err
	}
}

// Bytes returns the request and response body bytes this client has sent
// and received so far, as they crossed the wire (compressed, when they
// were).
func (c *Client) Bytes() (sent, received int64) { return c.sent.Load(), c.recvd.Load() }

// Health checks that the server answers. Give ctx a short deadline.
func (c *Client) Health(ctx context.Context) error {
	var h wire.Health
	return c.do(ctx, "health", http.MethodGet, "/health", "", nil, &h)
}

// RegisterDevice binds the device to the token's tenant, and returns the
// tenant and user the server authenticated. When tenant is not empty, the
// server refuses (403) credentials of any other tenant, and registers
// nothing. schema is the device's own (nil: the server's); the server
// refuses one that contradicts its own with wire.ErrSchemaMismatch.
func (c *Client) RegisterDevice(ctx context.Context, device, tenant string, schema *entity.Schema) (wire.Device, error) {
	var out wire.Device
	err := c.do(ctx, "register device", http.MethodPost, "/devices", device, wire.Device{Device: device, Tenant: tenant, Schema: schema}, &out)
	return out, err
}

// OpenSession opens a push session for the device. With a session id
// (made by the caller, such as a UUID) opening is idempotent: opening the
// same id again returns the same session. Without one the server makes the
// id.
func (c *Client) OpenSession(ctx context.Context, device, session string) (string, error) {
	var out wire.Session
	err := c.do(ctx, "open session", http.MethodPost, "/sessions", device, wire.Session{Session: session}, &out)
	return out.Session, err
}

// SendBatch stages batch seq of a session. Re-sending a batch replaces it
// (unless the copy staged came from a later p.Attempt: wire.ErrConflict).
// With p.Open the server opens the session first if it has not yet; with
// p.Commit it commits the session after the batch and the answer's Commit
// holds the commit's answer.
func (c *Client) SendBatch(ctx context.Context, device, session string, seq int, rows []wire.Row, p wire.BatchParams) (wire.BatchAck, error) {
	var out wire.BatchAck
	path := "/sessions/" + url.PathEscape(session) + "/batches/" + strconv.Itoa(seq)
	q := url.Values{}
	if p.Open {
		q.Set(wire.BatchOpen, "1")
	}
	if p.Commit {
		q.Set(wire.BatchCommit, "1")
	}
	if p.Attempt > 0 {
		q.Set(wire.BatchAttempt, strconv.FormatInt(p.Attempt, 10))
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	err := c.do(ctx, fmt.Sprintf("send batch %d", seq), http.MethodPut, path, device, wire.Batch{Rows: rows}, &out)
	return out, err
}

// SetTenant makes every request, the event stream's too, name tenant in
// the wire.HeaderTenant header (none when ""): the server then refuses,
// with wire.ErrForbidden, credentials of any other tenant. The coordinator sets
// the tenant the device's database is bound to, so that a token of another
// tenant cannot pull that tenant's rows into it.
func (c *Client) SetTenant(tenant string) {
	c.tenant.Store(&tenant)
}

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

// Commit applies a session on the server. Re-sending a commit returns the
// first answer.
func (c *Client) Commit(ctx context.Context, device, session string) (wire.Commit, error) {
	var out wire.Commit
	path := "/sessions/" + url.PathEscape(session) + "/commit"
	err := c.do(ctx, "commit session "+session, http.MethodPost, path, device, struct{}{}, &out)
	return out, err
}

// Settle commits a session whose last batch, sent with the commit, got no
// answer (wire.CommitRequest): the answer's Settled says whether that
// batch committed the session.
func (c *Client) Settle(ctx context.Context, device, session string, last wire.LastBatch) (wire.Commit, error) {
	var out wire.Commit
	path := "/sessions/" + url.PathEscape(session) + "/commit"
	err := c.do(ctx, "settle session "+session, http.MethodPost, path, device, wire.CommitRequest{Settle: &last}, &out)
	return out, err
}

// Changes returns up to limit rows changed after cursor.
//
// own names push sessions of device whose rows the caller holds as pushed:
// the server passes over those it kept as pushed (at most
// wire.MaxEchoSessions; nil for none).
func (c *Client) Changes(ctx context.Context, device, cursor string, limit int, own []string) (wire.Changes, error) {
	var out wire.Changes
	q := url.Values{}
	q.Set("cursor", cursor)
	q.Set("limit", strconv.Itoa(limit))
	if len(own) > 0 {
		q.Set("own", strings.Join(own, ","))
	}
	err := c.do(ctx, "pull changes", http.MethodGet, "/changes?"+q.Encode(), device, nil, &out)
	return out, err
}

// Snapshot returns a page of the tenant's live rows after cursor (""
// starts a snapshot), for a device that must rebuild (wire.Snapshot).
func (c *Client) Snapshot(ctx context.Context, device, cursor string, limit int) (wire.Snapshot, error) {
	var out wire.Snapshot
	q := url.Values{}
	q.Set("cursor", cursor)
	q.Set("limit", strconv.Itoa(limit))
	err := c.do(ctx, "snapshot", http.MethodGet, "/snapshot?"+q.Encode(), device, nil, &out)
	return out, err
}

// Digests returns the server's digest of every table of the tenant.
// With columns (a device's tables and their columns, id first), only
// those are digested: what a device of an older app version has in common
// with the server.
func (c *Client) Digests(ctx context.Context, columns map[string][]string) (wire.Digests, error) {
	var out wire.Digests
	if columns != nil {
		err := c.do(ctx, "digest", http.MethodPost, "/digest", "", wire.DigestRequest{Columns: columns}, &out)
		return out, err
	}
	err := c.do(ctx, "digest", http.MethodGet, "/digest", "", nil, &out)
	return out, err
}

// do sends one request with the bearer token (except for the health
// check, which needs none) and decodes its JSON answer into out.
func (c *Client) do(ctx context.Context, op, method, path, device string, in, out any) error {
	if op == "health" {
		return c.send(ctx, op, method, path, device, c.token, in, out)
	}
	return c.withToken(ctx, op, func(token string) error {
		return c.send(ctx, op, method, path, device, token, in, out)
	})
}

// send sends one request and decodes its JSON answer into out.
func (c *Client) send(ctx context.Context, op, method, path, device, token string, in, out any) error {
	// Whether the request got a connection tells an unreachable server
	// from a failure after it was reached, where the transport says so
	// (traced: it asked for a connection).
	var traced, connected atomic.Bool
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(string) { traced.Store(true) },
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	})
	unreached := func() bool { return traced.Load() && !connected.Load() }
	if d, ok := ctx.Value(connectKey{}).(time.Duration); ok && d > 0 {
		t := time.AfterFunc(d, func() {
			if unreached() {
				cancel(fmt.Errorf("no connection within %v: %w", d, ErrUnreachable))
			}
		})
		defer t.Stop()
	}
	req := c.r.R().SetContext(ctx).SetDoNotParseResponse(true)
	if token != "" {
		req.SetAuthToken(token)
	}
	if t := c.tenant.Load(); t != nil && *t != "" {
		req.SetHeader(wire.HeaderTenant, *t)
	}
	if device != "" {
		req.SetHeader(wire.HeaderDevice, device)
	}
	var body *io.PipeReader
	var encoded <-chan error
	if in != nil {
		body, encoded = c.stream(in)
		if c.gzip {
			req.SetHeader("Content-Encoding", "gzip")
		}
		req.SetHeader("Content-Type", "application/json").SetBody(body)
	}
	resp, err := req.Execute(method, path)
	if body != nil {
		body.Close() // ends the encoder if the request stopped reading early
		if err := <-encoded; err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return &Error{Op: op, Err: err}
		}
	}
	if err != nil {
		if unreached() {
			if cause := context.Cause(ctx); errors.Is(cause, ErrUnreachable) {
				err = cause
			} else if ctx.Err() == nil {
				err = fmt.Errorf("%w: %w", ErrUnreachable, err)
			}
		}
		return &Error{Op: op, Err: err, transient: true}
	}
	raw := resp.RawBody()
	defer raw.Close()
	cr := &countingReader{r: raw}
	defer func() { c.recvd.Add(cr.n) }()
	var answer io.Reader = cr
	if strings.EqualFold(resp.Header().Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(cr)
		if err != nil {
			return &Error{Op: op, Status: resp.StatusCode(), Err: fmt.Errorf("read answer: %w", err), transient: true}
		}
		defer zr.Close()
		answer = zr
	}
	if resp.StatusCode() >= 400 {
		return errorFrom(op, resp.StatusCode(), resp.Header(), answer)
	}
	dec := json.NewDecoder(answer)
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		// A cut or garbled answer: the request may have been applied, and
		// retrying is safe because every endpoint is idempotent.
		return &Error{Op: op, Status: resp.StatusCode(), Err: fmt.Errorf("read answer: %w", err), transient: true}
	}
	return nil
}

// stream encodes v as JSON, gzipped unless disabled, into the returned
// body while the request sends it, so that encoding, the network and the
// server's decoding overlap. done receives the encoder's error, if any,
// once the body is written or closed.
func (c *Client) stream(v any) (body *io.PipeReader, done <-chan error) {
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		cw := &countingWriter{w: pw}
		var w io.Writer = cw
		var zw *gzip.Writer
		if c.gzip {
			zw = gzpool.Get(cw)
			w = zw
		}
		var err error
		if b, ok := v.(wire.Batch); ok { // the bulk of a push: encoded without reflection
			buf := batchBufs.Get().(*[]byte)
			if *buf, err = wire.AppendBatch((*buf)[:0], b.Rows); err == nil {
				_, err = w.Write(*buf)
			}
			if cap(*buf) <= 16<<20 {
				batchBufs.Put(buf)
			}
		} else {
			err = json.NewEncoder(w).Encode(v)
		}
		if err != nil && !errors.Is(err, io.ErrClosedPipe) {
			err = fmt.Errorf("encode request: %w", err)
		}
		if zw != nil {
			if cerr := zw.Close(); err == nil && cerr != nil && !errors.Is(cerr, io.ErrClosedPipe) {
				err = fmt.Errorf("compress request: %w", cerr)
			}
			gzpool.Put(zw)
		}
		c.sent.Add(cw.n)
		pw.CloseWithError(err)
		errc <- err
	}()
	return pr, errc
}

// batchBufs holds the buffers pushed batches are encoded into.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
