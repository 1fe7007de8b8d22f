package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"

	"github.com/tethersync/tether/wire"
)

// ErrInjected is the error of an injected network failure.
var ErrInjected = errors.New("testkit: injected network failure")

// Fault is what a FaultTransport does with one request.
type Fault int

// The faults.
const (
	Pass           Fault = iota // deliver normally
	DropRequest                 // fail before the server sees the request (on a connection the client got)
	DropResponse                // deliver, let the server act, then lose the answer
	Status503                   // answer 503 without delivering
	Status429                   // answer 429 with Retry-After: 1 without delivering
	Status413                   // answer 413 without delivering
	Status502                   // answer 502 as a gateway that cannot reach the server (no API error body)
	ProxyStatus413              // answer 413 as a proxy's body limit (no API error body), without delivering
	Duplicate                   // deliver twice (a proxy that retries), answer with the second answer
)

// FaultTransport is an http.RoundTripper that injects faults chosen per
// request by Decide, and counts requests per kind.
type FaultTransport struct {
	Base http.RoundTripper // default http.DefaultTransport
	// Decide is called for each request with its kind (see Kind) and the
	// number of earlier requests of that kind. Nil passes everything.
	Decide func(r *http.Request, kind string, n int) Fault

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

// RoundTrip implements http.RoundTripper.
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
	switch fault {
	case DropRequest:
		// Lost on a connection the client had: not an unreachable server.
		if trace := httptrace.ContextClientTrace(r.Context()); trace != nil && trace.GotConn != nil {
			trace.GotConn(httptrace.GotConnInfo{})
		}
		return nil, ErrInjected
	case Status503:
		return synthetic(r, http.StatusServiceUnavailable, "unavailable"), nil
	case Status429:
		resp := synthetic(r, http.StatusTooManyRequests, "rate_limited")
		resp.Header.Set("Retry-After", "1")
		return resp, nil
	case Status413:
		return synthetic(r, http.StatusRequestEntityTooLarge, "too_large"), nil
	case Status502:
		resp := synthetic(r, http.StatusBadGateway, "")
		resp.Header.Set("Content-Type", "text/plain")
		resp.Body = io.NopCloser(strings.NewReader("502 Bad Gateway"))
		return resp, nil
	case ProxyStatus413:
		resp := synthetic(r, http.StatusRequestEntityTooLarge, "")
		resp.Header.Set("Content-Type", "text/html")
		resp.Body = io.NopCloser(strings.NewReader("<html>413 Request Entity Too Large</html>"))
		return resp, nil
	case Duplicate:
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
	case DropResponse:
		resp, err := base.RoundTrip(r)
		if err == nil {
			resp.Body.Close()
		}
		return nil, ErrInjected
	}
	return base.RoundTrip(r)
}

func synthetic(r *http.Request, status int, code string) *http.Response {
	body := fmt.Sprintf(`{"error":{"code":%q,"message":"injected"}}`, code)
	return &http.Response{
		StatusCode: status,
		Status:     http.StatusText(status),
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    r,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
}
