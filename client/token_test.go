package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

var jwtSecret = []byte("a shared secret of reasonable length, for tests")

// minter is a token source issuing HS256 JWTs for ada of tenant acme,
// each valid for life (or already expired, when life is negative).
type minter struct {
	mu     sync.Mutex
	life   func(n int) time.Duration // life of the n-th token, from 0
	issued []time.Time               // expiry of each token issued
}

func (m *minter) Token(ctx context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	exp := now.Add(m.life(len(m.issued)))
	m.issued = append(m.issued, exp)
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "ada", "tenant": "acme", "iat": now.Unix(), "exp": exp.Unix(),
		"jti": fmt.Sprint(len(m.issued)), // every token differs
	}).SignedString(jwtSecret)
}

func (m *minter) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.issued)
}

// statusCounter counts answers by status.
type statusCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    map[int]int
}

func (s *statusCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		if s.n == nil {
			s.n = map[int]int{}
		}
		s.n[resp.StatusCode]++
		s.mu.Unlock()
	}
	return resp, err
}

func (s *statusCounter) count(status int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[status]
}

func jwtServer(t *testing.T) *testkit.Server {
	reg := testkit.Registry(t)
	// A leeway of a nanosecond: a token is refused as soon as it expires.
	return testkit.NewServer(t, reg, server.Options{Auth: &server.JWT{Secret: jwtSecret, Leeway: time.Nanosecond}})
}

// A token that expires in the middle of a sync is refreshed once and the
// sync completes; the event stream gets a new token the same way.
func TestTokenExpiresDuringARun(t *testing.T) {
	ctx := context.Background()
	srv := jwtServer(t)
	src := &minter{life: func(int) time.Duration { return time.Second }}
	// The second batch waits until the first token has expired: the token
	// expires during the run.
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "batches" && n == 1 {
			src.mu.Lock()
			exp := src.issued[0]
			src.mu.Unlock()
			// JWT expiries are whole seconds: wait past the second.
			for i := 0; i < 100 && !time.Now().After(exp.Truncate(time.Second).Add(50*time.Millisecond)); i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
		return testkit.Pass
	}}
	sc := &statusCounter{base: ft}
	reg := testkit.Registry(t)
	db, err := localdb.Open(ctx, filepath.Join(t.TempDir(), "device.db"), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	api := client.New(srv.URL, client.Options{TokenSource: src, Transport: sc, Timeout: 10 * time.Second})
	co := coordinator.New(db, api, coordinator.Options{PushBatchSize: 5, MaxElapsed: 20 * time.Second})
	defer co.Close()
	for i := range 12 {
		if err := db.Save(ctx, &testkit.Customer{Name: fmt.Sprintf("c%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := co.SyncNow(ctx)
	if err != nil {
		t.Fatalf("SyncNow with a token expiring mid-run: %v", err)
	}
	if rep.Pushed["customers"] != 12 {
		t.Errorf("pushed %v, want 12 customers", rep.Pushed)
	}
	if n := sc.count(http.StatusUnauthorized); n != 1 {
		t.Errorf("%d answers 401, want 1 (the expired token, once)", n)
	}
	if n := src.count(); n != 2 {
		t.Errorf("%d tokens issued, want 2 (the first and one refresh)", n)
	}
	if rep.Attempts != 1 {
		t.Errorf("%d attempts: the refresh should happen inside the request, not by retrying the sync", rep.Attempts)
	}
	var n int
	if err := testkit.OpenServerDB(t, srv.Path).QueryRow(`SELECT count(*) FROM customers WHERE _tenant = 'acme'`).Scan(&n); err != nil || n != 12 {
		t.Errorf("server holds %d customers (%v), want 12", n, err)
	}

	// The event stream: the second token expires too, and the stream gets
	// a third.
	src.mu.Lock()
	exp := src.issued[1]
	src.mu.Unlock()
	for i := 0; i < 100 && !time.Now().After(exp.Truncate(time.Second).Add(50*time.Millisecond)); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	ectx, cancel := context.WithCancel(ctx)
	opened := false
	err = api.Events(ectx, func() { opened = true; cancel() }, func(wire.Event) {})
	if !opened {
		t.Fatalf("event stream did not open with a refreshed token: %v", err)
	}
	if n := src.count(); n != 3 {
		t.Errorf("%d tokens issued, want 3", n)
	}
	if n := sc.count(http.StatusUnauthorized); n != 2 {
		t.Errorf("%d answers 401, want 2", n)
	}
}

// A source whose tokens the server refuses gets one refresh per request,
// then the 401 is returned: permanent, not retried.
func TestTokenRefusedAfterRefresh(t *testing.T) {
	ctx := context.Background()
	srv := jwtServer(t)
	src := &minter{life: func(int) time.Duration { return -time.Hour }} // born expired
	sc := &statusCounter{base: http.DefaultTransport}
	api := client.New(srv.URL, client.Options{TokenSource: src, Transport: sc})
	_, err := api.RegisterDevice(ctx, "0190c3b2-0000-7000-8000-000000000001", "", nil)
	if !errors.Is(err, wire.ErrUnauthorized) || client.Transient(err) {
		t.Fatalf("RegisterDevice=%v, want a permanent ErrUnauthorized", err)
	}
	if n := src.count(); n != 2 {
		t.Errorf("%d tokens issued, want 2 (one refresh)", n)
	}
	if n := sc.count(http.StatusUnauthorized); n != 2 {
		t.Errorf("%d answers 401, want 2", n)
	}
	err = api.Events(ctx, func() { t.Error("stream opened with a refused token") }, func(wire.Event) {})
	if !errors.Is(err, wire.ErrUnauthorized) {
		t.Errorf("Events=%v, want ErrUnauthorized", err)
	}
	if n := src.count(); n != 4 {
		t.Errorf("%d tokens issued, want 4", n)
	}

	// A source that fails is reported with the operation.
	bad := client.New(srv.URL, client.Options{TokenSource: client.TokenFunc(func(context.Context) (string, error) {
		return "", errors.New("identity provider down")
	})})
	if _, err := bad.Changes(ctx, "", "", 10, nil); err == nil || client.Transient(err) {
		t.Errorf("Changes with a failing source = %v", err)
	} else if got := err.Error(); got != "pull changes: token source: identity provider down" {
		t.Errorf("error %q", got)
	}
}
