package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/metrics"
)

// metricsConfig is what the command line asks of metrics and the request
// log.
type metricsConfig struct {
	addr        string // -metrics-addr: "" serves no metrics
	tenantLabel bool
	logRequests bool
}

// flags registers the flags of metrics and the request log on fs.
func (m *metricsConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&m.addr, "metrics-addr", "", "serve Prometheus metrics at /metrics on this address, apart from the API (e.g. 127.0.0.1:9090); empty for none")
	fs.BoolVar(&m.tenantLabel, "metrics-tenant-label", false, "label the metrics of what a tenant does with the tenant (one series per tenant: mind the cardinality)")
	fs.BoolVar(&m.logRequests, "log-requests", true, "log one line per request (Info 2xx/3xx, Warn 4xx, Error 5xx); off: server errors only")
}

// start sets the request log and the metrics' observer in opts and, with
// -metrics-addr, serves the metrics until ctx ends. The returned function
// stops serving them.
func (m metricsConfig) start(ctx context.Context, opts *server.Options) (stop func(), err error) {
	opts.LogRequests = m.logRequests
	if m.addr == "" {
		return func() {}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mx, err := metrics.New(metrics.Options{Registerer: reg, TenantLabel: m.tenantLabel})
	if err != nil {
		return nil, err
	}
	opts.Observer = mx
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: defaultIdleTimeout}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("tether-server metrics", "err", err)
		}
	}()
	slog.Info("tether-server serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	return func() {
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		srv.Shutdown(shutdown)
	}, nil
}
