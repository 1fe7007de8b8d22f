package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/wire"
)

// headerLog is a server on loopback that answers every request with an
// empty JSON object and records the device and device key each one named.
type headerLog struct {
	mu   sync.Mutex
	seen map[string][2]string // "METHOD path" -> device, key
}

func newHeaderLog(t *testing.T) (*headerLog, *httptest.Server) {
	l := &headerLog{seen: map[string][2]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.seen[r.Method+" "+r.URL.Path] = [2]string{r.Header.Get(wire.HeaderDevice), r.Header.Get(wire.HeaderDeviceKey)}
		l.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "{}")
	}))
	t.Cleanup(srv.Close)
	return l, srv
}

// get returns the device and key the request to what named.
func (l *headerLog) get(t *testing.T, what string) (device, key string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.seen[what]
	if !ok {
		t.Fatalf("no request %s", what)
	}
	return h[0], h[1]
}

// Every request that names a device carries the key SetDeviceKey gave for
// it, and only that device's key; a request that names no device, or a
// device without a key, carries none.
func TestDeviceKeyHeader(t *testing.T) {
	ctx := context.Background()
	const dev, key = "device-1", "k0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
	const other, otherKey = "device-2", "o0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
	log, srv := newHeaderLog(t)
	c := client.New(srv.URL, client.Options{Token: "token-ada"})
	c.SetDeviceKey(dev, key)
	c.SetDeviceKey(other, otherKey)

	named := []struct {
		what string
		call func() error
	}{
		{"POST /v1/devices", func() error { _, err := c.RegisterDevice(ctx, dev, "", nil); return err }},
		{"POST /v1/sessions", func() error { _, err := c.OpenSession(ctx, dev, "s1"); return err }},
		{"PUT /v1/sessions/s1/batches/0", func() error {
			_, err := c.SendBatch(ctx, dev, "s1", 0, nil, wire.BatchParams{Open: true})
			return err
		}},
		{"POST /v1/sessions/s1/commit", func() error { _, err := c.Commit(ctx, dev, "s1"); return err }},
		{"GET /v1/changes", func() error { _, err := c.Changes(ctx, dev, "", 10, nil); return err }},
		{"GET /v1/snapshot", func() error { _, err := c.Snapshot(ctx, dev, "", 10); return err }},
	}
	for _, tt := range named {
		if err := tt.call(); err != nil {
			t.Fatalf("%s: %v", tt.what, err)
		}
		if gotDev, gotKey := log.get(t, tt.what); gotDev != dev || gotKey != key {
			t.Errorf("%s named %q with key %q, want %q with %q", tt.what, gotDev, gotKey, dev, key)
		}
	}

	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Digests(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"GET /v1/health", "GET /v1/digest"} {
		if gotDev, gotKey := log.get(t, what); gotDev != "" || gotKey != "" {
			t.Errorf("%s named %q with key %q, want no device and no key", what, gotDev, gotKey)
		}
	}

	// A device without a key (never given, or forgotten) gets none.
	c.SetDeviceKey(dev, "")
	for _, d := range []string{dev, "device-3"} {
		if _, err := c.Changes(ctx, d, "", 10, nil); err != nil {
			t.Fatal(err)
		}
		if gotDev, gotKey := log.get(t, "GET /v1/changes"); gotDev != d || gotKey != "" {
			t.Errorf("Changes as %s named %q with key %q, want %q with none", d, gotDev, gotKey, d)
		}
	}
	if _, err := c.Changes(ctx, other, "", 10, nil); err != nil {
		t.Fatal(err)
	}
	if gotDev, gotKey := log.get(t, "GET /v1/changes"); gotDev != other || gotKey != otherKey {
		t.Errorf("Changes as %s named %q with key %q, want %q with %q", other, gotDev, gotKey, other, otherKey)
	}
}

// Keys are set and read while requests run, from many goroutines (run
// with -race).
func TestDeviceKeyConcurrent(t *testing.T) {
	ctx := context.Background()
	_, srv := newHeaderLog(t)
	c := client.New(srv.URL, client.Options{Token: "token-ada"})
	var wg sync.WaitGroup
	for i := range 8 {
		dev := fmt.Sprintf("device-%d", i)
		wg.Go(func() {
			for j := range 10 {
				c.SetDeviceKey(dev, fmt.Sprintf("%s-key-%040d", dev, j))
				if _, err := c.Changes(ctx, dev, "", 1, nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
