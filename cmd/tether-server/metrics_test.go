package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
)

// With -metrics-addr the command serves Prometheus metrics on an address
// of their own, which count a device's sync.
func TestServeMetrics(t *testing.T) {
	schema, toks := files(t, `{"token-ada": {"tenant": "acme", "user": "ada"}}`)
	addr, maddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", addr, "-db", filepath.Join(t.TempDir(), "s.db"),
			"-schema", schema, "-tokens", toks, "-metrics-addr", maddr, "-metrics-tenant-label"})
	}()
	url := "http://" + addr
	waitUp(t, url, http.DefaultClient)
	d := testkit.NewDevice(t, testkit.Registry(t), url, testkit.DeviceOptions{})
	if err := d.DB.Save(t.Context(), &testkit.Customer{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	d.Sync(t)

	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tether_rows_pushed_total{tenant="acme"} 1`,
		`tether_sessions_total{event="committed",tenant="acme"} 1`,
		`tether_requests_total{route="GET /v1/health",status="200",tenant=""}`,
		`go_goroutines `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics holds no %q:\n%s", want, body)
		}
	}
	resp, err = http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the API's address: %s, want 404", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not shut down")
	}
	if _, err := http.Get("http://" + maddr + "/metrics"); err == nil {
		t.Errorf("metrics still served after shutdown")
	}
}

// Without -metrics-addr nothing listens for metrics, and requests are
// logged (-log-requests).
func TestMetricsFlags(t *testing.T) {
	c, err := parseFlags([]string{"-schema", "schema.json", "-tokens", "tokens.json"})
	if err != nil {
		t.Fatal(err)
	}
	if c.metrics.addr != "" || c.metrics.tenantLabel || !c.metrics.logRequests {
		t.Errorf("metrics flags by default %+v, want no address, no tenant label, requests logged", c.metrics)
	}
}
