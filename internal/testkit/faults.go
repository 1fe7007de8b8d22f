package testkit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tethersync/tether/wire"
)

// ErrInjected is the error of an injected network failure.
var ErrInjected = errors.New("testkit: injected network failure")

// Fault is one kind of injected failure: what a FaultTransport or a Proxy
// does with one request. Both inject every kind.
type Fault int

// The faults. The proxy draws them in this order, so the order is part of
// a simulation seed's meaning: new kinds go at the end.
const (
	Pass           Fault = iota // deliver normally
	DropRequest                 // lose the request before the server sees it (on a connection the client got)
	DropResponse                // deliver, let the server act, then lose the answer
	Duplicate                   // deliver twice (a proxy that retries), answer with the second answer
	Delay                       // wait (FaultTransport: MaxDelay; Proxy: up to MaxDelay), then deliver
	Status500                   // deliver, then answer 500 instead of the server's answer
	Status503                   // answer 503 without delivering
	Status429                   // answer 429 with Retry-After: 1 without delivering
	Reset                       // deliver, send half the answer, reset the connection
	Truncate                    // deliver, send half the answer, close the connection
	Status413                   // answer 413 without delivering
	Status502                   // answer 502 as a gateway that cannot reach the server (no API error body)
	ProxyStatus413              // answer 413 as a proxy's body limit (no API error body), without delivering
	numFaults
)

var faultNames = [...]string{"none", "drop-request", "drop-response", "duplicate", "delay", "500", "503", "429",
	"reset", "truncate", "413", "502", "proxy-413"}

// String names the fault.
func (f Fault) String() string {
	if f < 0 || f >= numFaults {
		return fmt.Sprintf("fault(%d)", int(f))
	}
	return faultNames[f]
}

// canned is the answer of a fault that answers instead of the server:
// without delivering, or (Status500) after.
type canned struct {
	status int
	header http.Header
	body   string
}

// cannedAnswer returns the answer f gives instead of the server's, if f is
// such a fault.
func cannedAnswer(f Fault) (canned, bool) {
	api := func(status int, code string) canned {
		return canned{status, http.Header{"Content-Type": {"application/json"}},
			fmt.Sprintf(`{"error":{"code":%q,"message":"injected %d"}}`, code, status)}
	}
	switch f {
	case Status500:
		return api(http.StatusInternalServerError, "internal"), true
	case Status503:
		return api(http.StatusServiceUnavailable, "unavailable"), true
	case Status429:
		c := api(http.StatusTooManyRequests, "rate_limited")
		c.header.Set("Retry-After", "1")
		return c, true
	case Status413:
		return api(http.StatusRequestEntityTooLarge, "too_large"), true
	case Status502:
		return canned{http.StatusBadGateway, http.Header{"Content-Type": {"text/plain"}}, "502 Bad Gateway"}, true
	case ProxyStatus413:
		return canned{http.StatusRequestEntityTooLarge, http.Header{"Content-Type": {"text/html"}},
			"<html>413 Request Entity Too Large</html>"}, true
	}
	return canned{}, false
}

// response makes the canned answer a response to r.
func (c canned) response(r *http.Request) *http.Response {
	return &http.Response{
		StatusCode: c.status,
		Status:     http.StatusText(c.status),
		Header:     c.header.Clone(),
		Body:       io.NopCloser(strings.NewReader(c.body)),
		Request:    r,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
}

// write writes the canned answer to w.
func (c canned) write(w http.ResponseWriter) {
	for k, vs := range c.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(c.status)
	io.WriteString(w, c.body)
}

// FaultTransport is an http.RoundTripper that injects faults chosen per
// request by Decide, and counts requests per kind. It is safe for
// concurrent use.
type FaultTransport struct {
	Base http.RoundTripper // default http.DefaultTransport
	// Decide is called for each request with its kind (see Kind) and the
	// number of earlier requests of that kind. Nil passes everything.
	Decide func(r *http.Request, kind string, n int) Fault
	// MaxDelay is the wait of the Delay fault. Default 20ms.
	MaxDelay time.Duration

	mu     sync.Mutex
	counts map[string]int
}

// Kind names a request for counting: "health", "devices", "sessions",
// "batches", "commit", "changes". A batch sent with the commit
// (wire.BatchCommit) is a "commit": it is the request that commits.
func Kind(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/commit"):
		return "commit"
	case strings.Contains(p, "/batches/") && r.URL.Query().Get(wire.BatchCommit) == "1":
		return "commit"
	case strings.Contains(p, "/batches/"):
		return "batches"
	}
	return p[strings.LastIndex(p, "/")+1:]
}

// Count returns the number of requests of a kind seen so far.
func (f *FaultTransport) Count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[kind]
}

// RoundTrip implements http.RoundTripper. Faults that lose the request or
// the answer return ErrInjected.
func (f *FaultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := Kind(r)
	f.mu.Lock()
	if f.counts == nil {
		f.counts = map[string]int{}
	}
	n := f.counts[kind]
	f.counts[kind]++
	f.mu.Unlock()
	fault := Pass
	if f.Decide != nil {
		fault = f.Decide(r, kind, n)
	}
	base := f.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if c, ok := cannedAnswer(fault); ok && fault != Status500 {
		return c.response(r), nil
	}
	switch fault {
	case DropRequest:
		// Lost on a connection the client had: not an unreachable server.
		if trace := httptrace.ContextClientTrace(r.Context()); trace != nil && trace.GotConn != nil {
			trace.GotConn(httptrace.GotConnInfo{})
		}
		return nil, ErrInjected
	case Duplicate:
		return duplicate(base, r)
	case Delay:
		if err := sleep(r.Context(), cmp.Or(f.MaxDelay, 20*time.Millisecond)); err != nil {
			return nil, err
		}
	case DropResponse, Status500, Reset, Truncate:
		return afterDelivery(base, r, fault)
	}
	return base.RoundTrip(r)
}

// duplicate sends r twice and answers with the second answer.
func duplicate(base http.RoundTripper, r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		r.Body.Close()
	}
	send := func() (*http.Response, error) {
		c := r.Clone(r.Context())
		c.Body, c.ContentLength, c.GetBody = io.NopCloser(bytes.NewReader(body)), int64(len(body)), nil
		return base.RoundTrip(c)
	}
	first, err := send()
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, first.Body)
	first.Body.Close()
	return send()
}

// afterDelivery delivers r, then loses the answer (DropResponse), replaces
// it (Status500), or cuts it in half (Reset, Truncate).
func afterDelivery(base http.RoundTripper, r *http.Request, fault Fault) (*http.Response, error) {
	resp, err := base.RoundTrip(r)
	if fault == DropResponse {
		if err == nil {
			resp.Body.Close()
		}
		return nil, ErrInjected
	}
	if err != nil {
		return nil, err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if fault == Status500 {
		c, _ := cannedAnswer(Status500)
		return c.response(r), nil
	}
	cut := error(io.ErrUnexpectedEOF)
	if fault == Reset {
		cut = fmt.Errorf("%w: %w", ErrInjected, syscall.ECONNRESET)
	}
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(answer[:len(answer)/2]), errReader{cut}))
	resp.ContentLength = int64(len(answer))
	resp.Header.Set("Content-Length", fmt.Sprint(len(answer)))
	return resp, nil
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
