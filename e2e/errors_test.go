package e2e

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

func TestTransientStatusesRetried(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault testkit.Fault
		wait  time.Duration
	}{
		{"503", testkit.Status503, 0},
		{"429 with Retry-After", testkit.Status429, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := testkit.Registry(t)
			srv := testkit.NewServer(t, reg, server.Options{})
			ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
				if kind == "commit" && n == 0 {
					return tt.fault
				}
				return testkit.Pass
			}}
			a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft})
			saveCustomers(t, a, 5, "c")
			start := time.Now()
			rep := a.Sync(t)
			if rep.Attempts != 2 || rep.Pushed["customers"] != 5 {
				t.Errorf("Report=%+v, want 2 attempts and 5 rows pushed", rep)
			}
			if elapsed := time.Since(start); elapsed < tt.wait {
				t.Errorf("retried after %v, want at least the Retry-After of %v", elapsed, tt.wait)
			}
		})
	}
}

func TestPermanentErrorsNotRetried(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "not-a-token"})
	saveCustomers(t, a, 1, "c")
	rep, err := a.Co.SyncNow(ctx)
	if !errors.Is(err, wire.ErrUnauthorized) || client.Transient(err) {
		t.Fatalf("SyncNow=%v, want a permanent ErrUnauthorized", err)
	}
	if rep.Attempts > 1 {
		t.Errorf("Attempts=%d, want no retry", rep.Attempts)
	}
}

// A batch answered with 413 is halved and sent again.
func TestTooLargeBatchHalved(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	sizes := make(chan int, 100)
	var batches atomic.Int32 // requests carrying a batch, the last one's commit included
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if strings.Contains(r.URL.Path, "/batches/") && batches.Add(1) <= 2 {
			return testkit.Status413
		}
		return testkit.Pass
	}}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft,
		Co: coordinator.Options{PushBatchSize: 40, OnProgress: func(p coordinator.Progress) {
			if p.Phase == coordinator.PhasePush && p.Table != "" {
				sizes <- p.Done
			}
		}}})
	saveCustomers(t, a, 40, "c")
	rep := a.Sync(t)
	close(sizes)
	var done []int
	for d := range sizes {
		done = append(done, d)
	}
	if rep.Attempts != 1 || rep.Pushed["customers"] != 40 {
		t.Errorf("Report=%+v, want 40 rows in one attempt", rep)
	}
	if len(done) != 4 || done[0] != 10 {
		t.Errorf("push progress=%v, want batches of 10 after halving twice", done)
	}
	if n := serverCount(t, srv, `SELECT count(*) FROM customers`); n != 40 {
		t.Errorf("server rows=%d, want 40", n)
	}
}

// G8: a database synced for one tenant refuses another tenant's credentials.
func TestDeviceBoundToTenant(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-ada"})
	saveCustomers(t, a, 2, "acme")
	a.Sync(t)
	saveCustomers(t, a, 1, "more")
	other := coordinator.New(a.DB, client.New(srv.URL, client.Options{Token: "token-globe"}), coordinator.Options{})
	defer other.Close()
	_, err := other.SyncNow(ctx)
	if !errors.Is(err, wire.ErrForbidden) {
		t.Fatalf("SyncNow with another tenant's token=%v, want ErrForbidden", err)
	}
	if n := serverCount(t, srv, `SELECT count(*) FROM customers WHERE _tenant = 'globex'`); n != 0 {
		t.Errorf("globex got %d rows, want 0", n)
	}
	if n, _ := a.DB.Pending(ctx); n != 1 {
		t.Errorf("Pending=%d, want the new row still waiting", n)
	}
}

// The database itself remembers its tenant: even a server that has never
// seen the device (a new deployment, a restored backup) cannot make it mix
// tenants; nothing moves and the server registers nothing.
func TestDatabaseBoundToTenant(t *testing.T) {
	reg := testkit.Registry(t)
	first := testkit.NewServer(t, reg, server.Options{})
	a := testkit.NewDevice(t, reg, first.URL, testkit.DeviceOptions{Token: "token-ada"})
	saveCustomers(t, a, 2, "acme")
	a.Sync(t)
	if tenant, err := a.DB.Syncer().Tenant(ctx); err != nil || tenant != "acme" {
		t.Fatalf("Tenant=%q, %v; want acme after the first sync", tenant, err)
	}
	saveCustomers(t, a, 1, "more")
	fresh := testkit.NewServer(t, reg, server.Options{})
	other := coordinator.New(a.DB, client.New(fresh.URL, client.Options{Token: "token-globe"}), coordinator.Options{})
	defer other.Close()
	_, err := other.SyncNow(ctx)
	if !errors.Is(err, wire.ErrForbidden) || client.Transient(err) || !strings.Contains(err.Error(), `"acme"`) {
		t.Fatalf("SyncNow with another tenant's token=%v, want a permanent 403 naming acme", err)
	}
	if n := serverCount(t, fresh, `SELECT count(*) FROM customers`); n != 0 {
		t.Errorf("the new server got %d rows, want 0", n)
	}
	if n, _ := a.DB.Pending(ctx); n != 1 {
		t.Errorf("Pending=%d, want the new row still waiting", n)
	}
	if n := serverCount(t, fresh, `SELECT count(*) FROM _tether_devices`); n != 0 {
		t.Errorf("the new server registered %d devices, want 0", n)
	}
	// The same tenant on the new server is fine (the device re-registers).
	same := coordinator.New(a.DB, client.New(fresh.URL, client.Options{Token: "token-bob"}), coordinator.Options{})
	defer same.Close()
	if _, err := same.SyncNow(ctx); err != nil {
		t.Errorf("SyncNow with the same tenant: %v", err)
	}
}

// The server's per-token rate limit answers 429 with Retry-After; the
// coordinator waits and the sync completes.
func TestServerRateLimitHonoured(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{RateLimit: 2, RateBurst: 2})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Co: coordinator.Options{InitialBackoff: 10 * time.Millisecond}})
	saveCustomers(t, a, 3, "c")
	start := time.Now()
	rep := a.Sync(t) // register, open, batch, commit, changes: more than the burst
	if rep.Attempts < 2 || rep.Pushed["customers"] != 3 {
		t.Errorf("Report=%+v, want retries and 3 rows pushed", rep)
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("done after %v: the Retry-After of at least 1s was not honoured", elapsed)
	}
	if n := serverCount(t, srv, `SELECT count(*) FROM customers`); n != 3 {
		t.Errorf("server holds %d customers, want 3", n)
	}
}
