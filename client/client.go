package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/tethersync/tether/internal/gzpool"
	"github.com/tethersync/tether/wire"
)

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

// Client talks to one tether server. Each of its methods that makes a
// request returns, when it fails, an *Error wrapping a wire sentinel (or
// the network error, and then ErrUnreachable when no connection was had).
// It is safe for concurrent use.
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

	keyMu sync.RWMutex
	keys  map[string]string // device id -> device key (SetDeviceKey)

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

// Bytes returns the request and response body bytes this client has sent
// and received so far, as they crossed the wire (compressed, when they
// were).
func (c *Client) Bytes() (sent, received int64) { return c.sent.Load(), c.recvd.Load() }

// SetTenant makes every request, the event stream's too, name tenant in
// the wire.HeaderTenant header (none when ""): the server then refuses,
// with wire.ErrForbidden, credentials of any other tenant. The coordinator sets
// the tenant the device's database is bound to, so that a token of another
// tenant cannot pull that tenant's rows into it.
func (c *Client) SetTenant(tenant string) {
	c.tenant.Store(&tenant)
}

// SetDeviceKey makes every request that names device (registration,
// push and pull: the methods with a device argument) carry key, the
// device's secret, in the wire.HeaderDeviceKey header; "" forgets it. The
// key proves to the server that the request comes from that device: a
// server that checks keys answers a request naming a device without its
// key, or with another one, with wire.ErrDeviceKey (403). The key is the
// device's, not the user's: one client may hold the keys of several
// devices, and any token works with them. The coordinator sets the key of
// its database's device (localdb.Syncer.DeviceKey); a key is well-formed
// when wire.ValidDeviceKey says so. It is safe for concurrent use.
func (c *Client) SetDeviceKey(device, key string) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	if key == "" {
		delete(c.keys, device)
		return
	}
	if c.keys == nil {
		c.keys = map[string]string{}
	}
	c.keys[device] = key
}

// deviceKey returns the key SetDeviceKey set for device, or "".
func (c *Client) deviceKey(device string) string {
	c.keyMu.RLock()
	defer c.keyMu.RUnlock()
	return c.keys[device]
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
	ctx, conn := watchConnect(ctx)
	defer conn.stop()
	req := c.request(ctx, token, device)
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
		return &Error{Op: op, Err: conn.explain(ctx, err), transient: true}
	}
	return c.answer(op, resp, out)
}

// request returns a request under ctx with the token, the device and its
// key, and the database's tenant in its headers, whose answer the caller
// reads.
func (c *Client) request(ctx context.Context, token, device string) *resty.Request {
	req := c.r.R().SetContext(ctx).SetDoNotParseResponse(true)
	if token != "" {
		req.SetAuthToken(token)
	}
	if t := c.tenant.Load(); t != nil && *t != "" {
		req.SetHeader(wire.HeaderTenant, *t)
	}
	if device != "" {
		req.SetHeader(wire.HeaderDevice, device)
		if key := c.deviceKey(device); key != "" {
			req.SetHeader(wire.HeaderDeviceKey, key)
		}
	}
	return req
}

// answer reads the answer to a request: an *Error for an error status,
// else its JSON body into out.
func (c *Client) answer(op string, resp *resty.Response, out any) error {
	raw := resp.RawBody()
	defer raw.Close()
	cr := &countingReader{r: raw}
	defer func() { c.recvd.Add(cr.n) }()
	var body io.Reader = cr
	if strings.EqualFold(resp.Header().Get("Content-Encoding"), "gzip") {
		zr, err := gzpool.GetReader(cr)
		if err != nil {
			return &Error{Op: op, Status: resp.StatusCode(), Err: fmt.Errorf("read answer: %w", err), transient: true}
		}
		defer gzpool.PutReader(zr)
		body = zr
	}
	if resp.StatusCode() >= 400 {
		return errorFrom(op, resp.StatusCode(), resp.Header(), body)
	}
	if err := decode(body, out); err != nil {
		// A cut or garbled answer: the request may have been applied, and
		// retrying is safe because every endpoint is idempotent.
		return &Error{Op: op, Status: resp.StatusCode(), Err: fmt.Errorf("read answer: %w", err), transient: true}
	}
	return nil
}
