package testkit

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is an HTTP proxy on loopback that injects faults between sync
// clients and a tether server, each fault with its own rate; decisions come
// from a seeded generator. Its methods are safe for concurrent use.
type Proxy struct {
	// MaxDelay bounds the Delay fault. Default 20ms.
	MaxDelay time.Duration

	srv      *httptest.Server
	upstream atomic.Pointer[string]
	client   *http.Client

	mu      sync.Mutex
	rng     *rand.Rand
	rates   [numFaults]float64
	enabled bool
	counts  [numFaults]int64
}

// NewProxy starts a proxy on loopback in front of upstream, with faults
// off.
func NewProxy(upstream string, seed uint64) *Proxy {
	p := &Proxy{MaxDelay: 20 * time.Millisecond, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	p.upstream.Store(&upstream)
	p.client = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	return p
}

// URL is the proxy's address, for the clients.
func (p *Proxy) URL() string { return p.srv.URL }

// SetUpstream points the proxy at another server, such as a restarted one.
func (p *Proxy) SetUpstream(url string) { p.upstream.Store(&url) }

// SetRate sets the probability (0 to 1) of fault f for each request.
func (p *Proxy) SetRate(f Fault, rate float64) {
	p.mu.Lock()
	p.rates[f] = rate
	p.mu.Unlock()
}

// Enable turns fault injection on or off.
func (p *Proxy) Enable(on bool) {
	p.mu.Lock()
	p.enabled = on
	p.mu.Unlock()
}

// Counts returns how many times each fault with a rate was injected.
func (p *Proxy) Counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int64{}
	for f := Fault(1); f < numFaults; f++ {
		if p.rates[f] > 0 || p.counts[f] > 0 {
			out[f.String()] = p.counts[f]
		}
	}
	return out
}

// Close stops the proxy.
func (p *Proxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.client.CloseIdleConnections()
}

func (p *Proxy) decide() (Fault, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled {
		return Pass, 0
	}
	x := p.rng.Float64()
	for f := Fault(1); f < numFaults; f++ {
		if x < p.rates[f] {
			p.counts[f]++
			return f, time.Duration(p.rng.Int64N(int64(p.MaxDelay) + 1))
		}
		x -= p.rates[f]
	}
	return Pass, 0
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		hangUp(w, false)
		return
	}
	fault, delay := p.decide()
	if c, ok := cannedAnswer(fault); ok && fault != Status500 {
		c.write(w)
		return
	}
	switch fault {
	case DropRequest:
		hangUp(w, false)
		return
	case Delay:
		time.Sleep(delay)
	case Duplicate:
		if resp, err := p.forward(r, body); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	resp, err := p.forward(r, body)
	if err != nil {
		http.Error(w, `{"error":{"code":"unavailable","message":"upstream down"}}`, http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		hangUp(w, false)
		return
	}
	switch fault {
	case DropResponse:
		hangUp(w, false)
		return
	case Status500:
		c, _ := cannedAnswer(Status500)
		c.write(w)
		return
	case Reset, Truncate:
		cut(w, resp, answer, fault == Reset)
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

func (p *Proxy) forward(r *http.Request, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, *p.upstream.Load()+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	return p.client.Do(req)
}

// hangUp closes the client's connection without an answer; with reset, the
// close sends a TCP reset.
func hangUp(w http.ResponseWriter, reset bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		tc.SetLinger(0)
	}
	conn.Close()
}

// cut sends the answer's status and headers, with the full Content-Length,
// and half its body, then closes or resets the connection.
func cut(w http.ResponseWriter, resp *http.Response, answer []byte, reset bool) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	h := resp.Header.Clone()
	h.Del("Transfer-Encoding")
	h.Set("Content-Length", fmt.Sprint(len(answer)))
	h.Set("Connection", "close")
	h.Write(buf)
	buf.WriteString("\r\n")
	buf.Write(answer[:len(answer)/2])
	buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		tc.SetLinger(0)
	}
	conn.Close()
}
