package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// While a sync waits to try again (the server answers 503, asking for an
// hour), the agent's status says why and when.
func TestAgentShowsRetry(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent")
	}
	dir := t.TempDir()
	agentBin := build(t, dir, "fielddevice", ".")
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"unavailable","message":"down for maintenance"}}`))
	}))
	defer down.Close()
	env := []string{"TETHER_SERVER=" + down.URL, "TETHER_TOKEN=token-field", "TETHER_LOG_LEVEL=info"}
	a := start(t, "agent", agentBin, env, "-db", dir+"/device.db", "-name", "probe-7", "-interval", "1h", "-sample", "1h",
		"-status", "127.0.0.1:0")
	st := a.waitStatus(t, "a sync waiting to retry", func(s Status) bool { return s.Retry != "" })
	if want := "retrying in 1m0s (attempt 2): "; !strings.HasPrefix(st.Retry, want) || !strings.Contains(st.Retry, "down for maintenance") || !st.Syncing {
		t.Errorf("status %+v; want syncing, and %q… naming the server's error", st, want)
	}
	if l := a.waitLog(t, "sync retrying"); l["attempt"] != float64(2) {
		t.Errorf("retry logged as %v, want attempt 2", l)
	}
	a.stop(t)
}
