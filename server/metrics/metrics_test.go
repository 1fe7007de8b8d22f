package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/metrics"
)

// scrape reads the metrics endpoint at url: each sample's value by its
// name and labels as the text format prints them.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		got[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// start serves a test server whose observer is a Metrics of a registry of
// its own, and that registry on a metrics endpoint of its own; it returns
// both servers and the metrics.
func start(t *testing.T, opts server.Options, mo metrics.Options) (*testkit.Server, string, *metrics.Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	mo.Registerer = reg
	m, err := metrics.New(mo)
	if err != nil {
		t.Fatal(err)
	}
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(ms.Close)
	opts.Observer = m
	return testkit.NewServer(t, testkit.Registry(t), opts), ms.URL + "/metrics", m
}

func TestMetricsOfASync(t *testing.T) {
	ctx := context.Background()
	srv, metricsURL, m := start(t, server.Options{
		Strategies:       map[string]server.Strategy{"customers": server.ServerWins},
		MaxBatchRows:     2, // a push of 3 rows is refused once (413), then halved
		AuthFailures:     0.001,
		AuthFailureBurst: 1, // the second failed authentication gets 429
		SweepInterval:    -1,
	}, metrics.Options{})
	reg := testkit.Registry(t)
	// Batches of 3 rows: refused once, then halved to 1.
	co := coordinator.Options{PushBatchSize: 3}
	ada := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Co: co})
	bob := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob", Co: co})
	before := scrape(t, metricsURL)

	var ids []string
	for i := range 3 {
		c := testkit.Customer{Name: fmt.Sprintf("c%d", i)}
		if err := ada.DB.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	pushed, pulled, conflicts := 0, 0, 0
	sync := func(d *testkit.Device) {
		rep := d.Sync(t)
		for _, n := range rep.Pushed {
			pushed += n
		}
		for _, n := range rep.Pulled {
			pulled += n
		}
		conflicts += rep.Conflicts
	}
	sync(ada) // 3 rows: a batch of 3 refused (413), then batches of 1
	sync(bob) // pulls the 3 rows
	if pushed != 3 || pulled != 3 {
		t.Fatalf("after the first syncs, pushed %d and pulled %d rows, want 3 and 3", pushed, pulled)
	}
	edit := func(d *testkit.Device, name string) {
		c := testkit.Customer{}
		if err := d.DB.Get(ctx, &c, ids[0]); err != nil {
			t.Fatal(err)
		}
		c.Name = name
		if err := d.DB.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	edit(ada, "ada's")
	edit(bob, "bob's")
	sync(ada)
	sync(bob) // its edit meets ada's: the server's row wins
	if pushed != 5 || conflicts != 1 {
		t.Fatalf("pushed %d rows with %d conflicts, want 5 and 1", pushed, conflicts)
	}
	// Two requests with a wrong token: 401, then 429 (AuthFailureBurst).
	for range 2 {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/changes", nil)
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// A sweep reports the active devices.
	if _, err := srv.Store.Sweep(server.WithObserver(ctx, m), server.Limits{}, 100); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, metricsURL)

	batches := `route="PUT /v1/sessions/{session}/batches/{seq}"`
	for _, c := range []struct {
		sample string
		want   float64
	}{
		{`tether_rows_pushed_total`, 5},
		{`tether_rows_pulled_total`, float64(pulled)},
		{`tether_conflicts_total{strategy="server-wins"}`, 1},
		{`tether_sessions_total{event="opened"}`, 3},
		{`tether_sessions_total{event="committed"}`, 3},
		{`tether_refusals_total{reason="too_large"}`, 1},
		{`tether_refusals_total{reason="unauthorized"}`, 1},
		{`tether_refusals_total{reason="rate_limited"}`, 1},
		{`tether_requests_total{` + batches + `,status="413"}`, 1},
		{`tether_requests_total{route="GET /v1/changes",status="401"}`, 1},
		{`tether_requests_total{route="GET /v1/changes",status="429"}`, 1},
		{`tether_request_duration_seconds_count{route="GET /v1/changes"}`, after[`tether_requests_total{route="GET /v1/changes",status="200"}`] + 2},
		{`tether_commit_duration_seconds_count`, 3},
		{`tether_active_devices`, 2},
		{`tether_sweeps_total{result="ok"}`, 1},
	} {
		if got := after[c.sample] - before[c.sample]; got != c.want {
			t.Errorf("%s moved by %v, want %v", c.sample, got, c.want)
		}
	}
	if got := after[`tether_rows_pulled_total`]; got < 3 {
		t.Errorf("tether_rows_pulled_total = %v, want at least bob's 3", got)
	}
	// The rows a commit applied: ada's 3 and 1; bob's row lost to the
	// server's.
	if got := after[`tether_rows_committed_total`] - before[`tether_rows_committed_total`]; got != 4 {
		t.Errorf("tether_rows_committed_total moved by %v, want 4", got)
	}
	// Requests by route: the pushed batches that were accepted (1, 1, 1,
	// then 1 and 1) answered 200.
	if got := after[`tether_requests_total{`+batches+`,status="200"}`]; got != 5 {
		t.Errorf("accepted batches = %v, want 5", got)
	}
	for sample := range after {
		if strings.Contains(sample, "route=") && !strings.Contains(sample, `route="`+"/\"") && !strings.Contains(sample, " /v1/") {
			t.Errorf("sample %s: the route is not an endpoint's pattern", sample)
		}
	}
}

func TestMetricsTenantLabel(t *testing.T) {
	srv, metricsURL, _ := start(t, server.Options{SweepInterval: -1}, metrics.Options{TenantLabel: true})
	reg := testkit.Registry(t)
	gus := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-globe"})
	if err := gus.DB.Save(context.Background(), &testkit.Customer{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	gus.Sync(t)
	got := scrape(t, metricsURL)
	for _, sample := range []string{
		`tether_rows_pushed_total{tenant="globex"}`,
		`tether_sessions_total{event="committed",tenant="globex"}`,
	} {
		if got[sample] != 1 {
			t.Errorf("%s = %v, want 1", sample, got[sample])
		}
	}
	if _, ok := got[`tether_rows_pushed_total`]; ok {
		t.Errorf("a sample without the tenant label: %v", got)
	}
}

func TestNewTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := metrics.New(metrics.Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.New(metrics.Options{Registerer: reg}); err == nil {
		t.Fatal("second New on one registry: nil error, want one")
	}
}
