// Package metrics counts what a tether server does as Prometheus metrics:
// requests by route and status with their latency, push sessions opened,
// committed and expired, rows pushed and pulled, conflicts by strategy,
// refusals by reason, the sweep's work, active devices and commit
// durations.
//
// # Use
//
// [New] registers the metrics and returns a [Metrics], which is a
// server.Observer: set it as server.Options.Observer, and serve the
// registry with promhttp on a listener of its own (tether-server's
// -metrics-addr does both):
//
//	m, err := metrics.New(metrics.Options{})
//	opts.Observer = m
//	go http.ListenAndServe("127.0.0.1:9090", promhttp.Handler())
//
// # Labels
//
// Routes are the patterns of the server's endpoints ("POST
// /v1/sessions/{session}/commit"), never raw paths, so the number of
// series stays fixed. The tenant is a label only with
// [Options.TenantLabel]: a server of many tenants would otherwise hold
// series for each. docs/metrics.md lists every metric.
package metrics
