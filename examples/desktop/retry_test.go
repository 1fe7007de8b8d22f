package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// unavailable answers every request with 503 and a Retry-After of 20 s,
// without delivering it, and counts the requests.
type unavailable struct{ n atomic.Int32 }

func (u *unavailable) RoundTrip(r *http.Request) (*http.Response, error) {
	u.n.Add(1)
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
		Header:  http.Header{"Content-Type": {"application/json"}, "Retry-After": {"20"}},
		Body:    io.NopCloser(strings.NewReader(`{"error":{"code":"unavailable","message":"down for maintenance"}}`)),
		Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

// While "Sync now" waits to try again, the app's state (what the page
// shows beside the progress bar) says why and when.
func TestDesktopShowsRetry(t *testing.T) {
	reg, err := Registry()
	if err != nil {
		t.Fatal(err)
	}
	srv := testkit.NewServer(t, reg, server.Options{})
	tr := &unavailable{}
	app, err := Open(context.Background(), Config{Name: "laptop", DBPath: filepath.Join(t.TempDir(), "laptop.db"),
		Server: srv.URL, Token: "token-ada", Probe: time.Hour, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(app.Handler())
	defer hs.Close()
	defer app.Close()

	ctx, cancel := context.WithCancel(context.Background())
	synced := make(chan struct{})
	go func() { // "Sync now": it waits an hour to try again, until the test leaves
		defer close(synced)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/api/sync", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	defer func() { cancel(); <-synced }()

	var s State
	for i := 0; s.Retry == "" && i < 6000; i++ { // bounded: about a minute
		resp, err := http.Get(hs.URL + "/api/state")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if s.Retry == "" {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("retry: %s", s.Retry)
	if want := "retrying in 20s (attempt 2): "; !strings.HasPrefix(s.Retry, want) || !strings.Contains(s.Retry, "down for maintenance") ||
		s.Phase != "retry" || !s.Syncing {
		t.Errorf("state while retrying: %+v; want phase retry and %q… naming the server's error", s, want)
	}
}
