package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// testKey is the device key of the test devices.
var testKey = strings.Repeat("k", 43)

// Each HTTP outcome maps to the sentinel and the retry advice the push and
// pull engines rely on.
func TestErrorMapping(t *testing.T) {
	ctx := context.Background()
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	const dev = "device-1"

	faulty := func(f testkit.Fault) *client.Client {
		return client.New(srv.URL, client.Options{Token: "token-ada", Transport: &testkit.FaultTransport{
			Decide: func(*http.Request, string, int) testkit.Fault { return f },
		}})
	}
	good := client.New(srv.URL, client.Options{Token: "token-ada"})
	good.SetDeviceKey(dev, testKey)
	if _, err := good.RegisterDevice(ctx, dev, "", nil); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name      string
		call      func() error
		sentinel  error
		status    int
		transient bool
		retry     time.Duration
	}{
		{"wrong token", func() error {
			_, err := client.New(srv.URL, client.Options{Token: "nope"}).RegisterDevice(ctx, dev, "", nil)
			return err
		}, wire.ErrUnauthorized, 401, false, 0},
		{"unknown session", func() error {
			_, err := good.Commit(ctx, dev, "no-such-session")
			return err
		}, wire.ErrNotFound, 404, false, 0},
		{"bad row", func() error {
			s, err := good.OpenSession(ctx, dev, "")
			if err != nil {
				return err
			}
			_, err = good.SendBatch(ctx, dev, s, 0, []wire.Row{{Table: "customers", ID: "x", Values: map[string]any{"nope": 1}}}, wire.BatchParams{})
			return err
		}, wire.ErrBadRequest, 400, false, 0},
		{"503", func() error { return faulty(testkit.Status503).Health(ctx) }, wire.ErrUnavailable, 503, true, 0},
		{"429", func() error { return faulty(testkit.Status429).Health(ctx) }, wire.ErrRateLimited, 429, true, time.Second},
		{"413", func() error { return faulty(testkit.Status413).Health(ctx) }, wire.ErrTooLarge, 413, false, 0},
		{"network", func() error { return faulty(testkit.DropRequest).Health(ctx) }, testkit.ErrInjected, 0, true, 0},
		{"gateway", func() error { return faulty(testkit.Status502).Health(ctx) }, client.ErrUnreachable, 502, true, 0},
		{"proxy 413", func() error { return faulty(testkit.ProxyStatus413).Health(ctx) }, wire.ErrTooLarge, 413, false, 0},
		{"unknown device", func() error {
			good.SetDeviceKey("never-registered", testKey)
			_, err := good.Changes(ctx, "never-registered", "", 10, nil)
			return err
		}, wire.ErrDeviceUnknown, 403, false, 0},
		{"device without its key", func() error {
			_, err := good.Changes(ctx, "no-key-given", "", 10, nil)
			return err
		}, wire.ErrDeviceKey, 403, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ce *client.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err=%v (%T), want *client.Error", err, err)
			}
			if !errors.Is(err, tt.sentinel) || ce.Status != tt.status {
				t.Errorf("err=%v status %d, want %v and status %d", err, ce.Status, tt.sentinel, tt.status)
			}
			if client.Transient(err) != tt.transient {
				t.Errorf("Transient=%v, want %v", client.Transient(err), tt.transient)
			}
			if got := client.RetryAfter(err); got != tt.retry {
				t.Errorf("RetryAfter=%v, want %v", got, tt.retry)
			}
			// Only an answer of the API with a 4xx status says that nothing
			// of the request was applied.
			if refused := tt.status >= 400 && tt.status < 500; errors.Is(err, wire.ErrRefused) != refused {
				t.Errorf("errors.Is(err, wire.ErrRefused)=%v, want %v", !refused, refused)
			}
		})
	}
}

// A request that gets no connection within the context's connect timeout
// fails with ErrUnreachable, without waiting for the request's timeout.
func TestConnectTimeout(t *testing.T) {
	dials := make(chan struct{}, 10)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials <- struct{}{}
		<-ctx.Done() // a link that never connects
		return nil, ctx.Err()
	}}
	c := client.New("http://127.0.0.1:1", client.Options{Token: "token-ada", Transport: tr, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang detector
	defer cancel()
	_, err := c.Changes(client.WithConnectTimeout(ctx, 50*time.Millisecond), "d", "", 10, nil)
	if !errors.Is(err, client.ErrUnreachable) || !client.Transient(err) || ctx.Err() != nil {
		t.Fatalf("Changes=%v (ctx %v), want a transient ErrUnreachable before the context ends", err, ctx.Err())
	}
	if len(dials) == 0 {
		t.Error("no dial was attempted")
	}
	// A transport that reports no connection (not net/http's) is not
	// judged by the connect timeout.
	slow := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
		return nil, errors.New("in-process transport failed after sending")
	})
	s := client.New("http://127.0.0.1:1", client.Options{Token: "token-ada", Transport: slow})
	if _, err := s.Changes(client.WithConnectTimeout(ctx, 20*time.Millisecond), "d", "", 10, nil); err == nil || errors.Is(err, client.ErrUnreachable) {
		t.Errorf("untraced transport: %v, want its own error, not ErrUnreachable", err)
	}
	// A caller's own cancellation is not a verdict on the server.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := c.Changes(client.WithConnectTimeout(cctx, time.Minute), "d", "", 10, nil); errors.Is(err, client.ErrUnreachable) {
		t.Errorf("cancelled request: %v, want no ErrUnreachable", err)
	}
}

// Request bodies are gzipped unless disabled, and Bytes counts them.
func TestGzipShrinksRequests(t *testing.T) {
	ctx := context.Background()
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	rows := make([]wire.Row, 200)
	for i := range rows {
		rows[i] = wire.Row{Table: "customers", ID: string(rune('a'+i%26)) + "-" + time.Unix(int64(i), 0).UTC().Format("150405"),
			HLC: "0000000000001.000000.d", Values: map[string]any{"name": "the same long customer name, again and again"}}
	}
	sent := map[bool]int64{}
	for _, gz := range []bool{false, true} {
		c := client.New(srv.URL, client.Options{Token: "token-ada", DisableGzip: !gz})
		c.SetDeviceKey("d", testKey)
		if _, err := c.RegisterDevice(ctx, "d", "", nil); err != nil {
			t.Fatal(err)
		}
		s, err := c.OpenSession(ctx, "d", "")
		if err != nil {
			t.Fatal(err)
		}
		before, _ := c.Bytes()
		if _, err := c.SendBatch(ctx, "d", s, 0, rows, wire.BatchParams{}); err != nil {
			t.Fatal(err)
		}
		after, _ := c.Bytes()
		sent[gz] = after - before
		if gz {
			if _, err := c.Commit(ctx, "d", s); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sent[true]*3 > sent[false] {
		t.Errorf("gzip sent %d bytes, plain %d: want at least 3x smaller", sent[true], sent[false])
	}
	// Answers are counted as they crossed the wire: compressed.
	received := map[bool]int64{}
	for _, gz := range []bool{false, true} {
		c := client.New(srv.URL, client.Options{Token: "token-ada", DisableGzip: !gz})
		_, before := c.Bytes()
		ch, err := c.Changes(ctx, "", "", 1000, nil)
		if err != nil || len(ch.Changes) != len(rows) {
			t.Fatalf("changes: %d rows, %v", len(ch.Changes), err)
		}
		_, after := c.Bytes()
		received[gz] = after - before
	}
	if received[true]*3 > received[false] {
		t.Errorf("gzip received %d bytes, plain %d: want the compressed answer counted, at least 3x smaller", received[true], received[false])
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
