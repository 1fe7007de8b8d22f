package metrics_test

import (
	"bufio"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/metrics"
	"github.com/tethersync/tether/server/sqlitestore"
)

// Customer is a synced entity.
type Customer struct {
	entity.Meta `sync:"customers,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
}

// A server whose metrics are served on a listener of their own.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "tether-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reg := entity.NewRegistry()
	if err := reg.Register(Customer{}); err != nil {
		log.Fatal(err)
	}
	store, err := sqlitestore.Open(filepath.Join(dir, "server.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	registry := prometheus.NewRegistry() // or Options{} for prometheus.DefaultRegisterer
	m, err := metrics.New(metrics.Options{Registerer: registry})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.New(store, server.Options{
		Auth:     server.StaticTokens{"token-1": {Tenant: "acme", User: "ada"}},
		Observer: m,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	api := httptest.NewServer(srv)
	defer api.Close()
	// The metrics' own listener: http.ListenAndServe("127.0.0.1:9090", promhttp.Handler())
	scrape := httptest.NewServer(promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	defer scrape.Close()

	for _, path := range []string{"/v1/health", "/v1/changes"} {
		resp, err := http.Get(api.URL + path)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(scrape.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "tether_requests_total") || strings.HasPrefix(line, "tether_refusals_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// tether_refusals_total{reason="unauthorized"} 1
	// tether_requests_total{route="GET /v1/changes",status="401"} 1
	// tether_requests_total{route="GET /v1/health",status="200"} 1
}
