package coordinator_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
)

// Each retry is reported through OnProgress, with the attempt that comes,
// the wait before it and the error of the attempt that failed: a server
// that answers the first three requests with 503 gives three reports, for
// attempts 2, 3 and 4, and the sync then succeeds.
func TestRetriesAreReported(t *testing.T) {
	const failures = 3
	reg, srv := newServer(t)
	var seen atomic.Int32
	ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if seen.Add(1) <= failures {
			return testkit.Status503
		}
		return testkit.Pass
	}}
	var mu sync.Mutex
	var retries []coordinator.Progress
	onProgress := func(p coordinator.Progress) {
		if p.Phase == coordinator.PhaseRetry {
			mu.Lock()
			retries = append(retries, p)
			mu.Unlock()
		}
	}
	d := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Transport: ft, Co: coordinator.Options{OnProgress: onProgress}})
	save(t, d, 2, "retried")
	rep := d.Sync(t)

	mu.Lock()
	defer mu.Unlock()
	if len(retries) != failures || rep.Attempts != failures+1 {
		t.Fatalf("%d retries reported, %d attempts; want %d and %d: %v", len(retries), rep.Attempts, failures, failures+1, retries)
	}
	for i, p := range retries {
		if p.Attempt != i+2 || p.Wait <= 0 || p.Err == nil || !strings.Contains(p.Err.Error(), "503") {
			t.Errorf("retry %d: attempt %d, wait %v, err %v; want attempt %d, a wait, the 503", i, p.Attempt, p.Wait, p.Err, i+2)
		}
		if s := p.String(); !strings.HasPrefix(s, "retrying in ") || !strings.Contains(s, "(attempt ") {
			t.Errorf("retry %d reads %q", i, s)
		}
	}
	if n := pending(t, d); n != 0 {
		t.Errorf("%d rows still pending after the retried sync", n)
	}
}

// Progress.String reads as a status line.
func TestProgressString(t *testing.T) {
	for _, tc := range []struct {
		p    coordinator.Progress
		want string
	}{
		{coordinator.Progress{Phase: coordinator.PhaseRetry, Attempt: 4, Wait: 8_200_000_000, Err: errString("connection refused")},
			"retrying in 8s (attempt 4): connection refused"},
		{coordinator.Progress{Phase: coordinator.PhasePush, Done: 40, Total: 100}, "push 40/100"},
		{coordinator.Progress{Phase: coordinator.PhasePull, Done: 250}, "pull 250"},
		{coordinator.Progress{Phase: coordinator.PhaseConnect}, "connect"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String()=%q, want %q", got, tc.want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// A server that asks to come back later than MaxElapsed allows (a 503
// with Retry-After: 3600) ends the sync at once with its error, rather
// than keeping a "Sync now" waiting an hour.
func TestRetryAfterPastMaxElapsedGivesUp(t *testing.T) {
	reg, _ := newServer(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"unavailable","message":"down for maintenance"}}`))
	}))
	defer down.Close()
	d := testkit.NewDevice(t, reg, down.URL, testkit.DeviceOptions{Co: coordinator.Options{MaxElapsed: time.Minute}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := d.Co.SyncNow(ctx)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "past MaxElapsed") || !strings.Contains(err.Error(), "down for maintenance") {
		t.Fatalf("SyncNow against a server back in an hour: %v (context %v); want it to give up at once, naming the wait and the error", err, ctx.Err())
	}
}
