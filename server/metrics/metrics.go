package metrics

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tethersync/tether/server"
)

// Options configures New. The zero value works.
type Options struct {
	// Registerer is where the metrics are registered. Default
	// prometheus.DefaultRegisterer, which promhttp.Handler serves.
	Registerer prometheus.Registerer
	// TenantLabel adds a "tenant" label to the counters and gauges of
	// what a tenant does (requests, sessions, rows, conflicts, refusals,
	// active devices); histograms never have it. Each tenant then has
	// series of its own: keep it off for servers of many tenants.
	// Default off.
	TenantLabel bool
}

// Metrics is a server.Observer that counts into Prometheus metrics. It is
// safe for concurrent use.
type Metrics struct {
	tenant bool

	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	sessions    *prometheus.CounterVec
	pushed      *prometheus.CounterVec
	pulled      *prometheus.CounterVec
	applied     *prometheus.CounterVec
	conflicts   *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	sweeps      *prometheus.CounterVec
	swept       *prometheus.CounterVec
	active      *prometheus.GaugeVec
	commitTimes prometheus.Histogram
}

var _ server.Observer = (*Metrics)(nil)

// New registers the metrics with opts.Registerer and returns them. It
// returns an error when a metric of the same name is registered already
// (a second New on one registry).
func New(opts Options) (*Metrics, error) {
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m := &Metrics{tenant: opts.TenantLabel}
	m.requests = m.counter("tether_requests_total", "HTTP requests answered, by route pattern and status.", "route", "status")
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tether_request_duration_seconds",
		Help: "Time from a request's arrival to the end of its answer, by route pattern.", Buckets: prometheus.DefBuckets}, []string{"route"})
	m.sessions = m.counter("tether_sessions_total", "Push sessions opened, committed (first commits only) and expired (by the sweep).", "event")
	m.pushed = m.counter("tether_rows_pushed_total", "Rows of the pushed batches the server accepted.")
	m.pulled = m.counter("tether_rows_pulled_total", "Rows served in pages of changes and of snapshots.")
	m.applied = m.counter("tether_rows_committed_total", "Rows the commits of push sessions applied.")
	m.conflicts = m.counter("tether_conflicts_total", "Conflicts settled at commit, by strategy (forbidden: rows refused by a scope or Authorize).", "strategy")
	m.refusals = m.counter("tether_refusals_total", "Requests refused with a 4xx status, by wire error code.", "reason")
	m.sweeps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tether_sweeps_total",
		Help: "Sweep rounds run (Store.Sweep calls: several in a row while each finds a full batch), by result (ok or error)."}, []string{"result"})
	m.swept = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tether_sweep_deleted_total",
		Help: "What the sweep discarded, by kind."}, []string{"kind"})
	m.active = m.gauge("tether_active_devices", "Devices whose pull position moved within DeviceActivity, as of the last sweep.")
	m.commitTimes = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tether_commit_duration_seconds",
		Help: "Time the store took to commit a push session.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)})
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.sessions, m.pushed, m.pulled, m.applied,
		m.conflicts, m.refusals, m.sweeps, m.swept, m.active, m.commitTimes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return m, nil
}

// counter returns a counter vector with labels, and "tenant" when asked.
func (m *Metrics) counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, m.labelNames(labels))
}

// gauge returns a gauge vector with labels, and "tenant" when asked.
func (m *Metrics) gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, m.labelNames(labels))
}

func (m *Metrics) labelNames(labels []string) []string {
	if m.tenant {
		return append(labels, "tenant")
	}
	return labels
}

// with returns the label values vals, and tenant when asked.
func (m *Metrics) with(tenant string, vals ...string) []string {
	if m.tenant {
		return append(vals, tenant)
	}
	return vals
}

// Request implements server.Observer.
func (m *Metrics) Request(r server.RequestInfo) {
	m.requests.WithLabelValues(m.with(r.Tenant, r.Route, strconv.Itoa(r.Status))...).Inc()
	m.latency.WithLabelValues(r.Route).Observe(r.Duration.Seconds())
	if r.Status >= 400 && r.Status < 500 {
		reason := r.Code
		if reason == "" {
			reason = "other"
		}
		m.refusals.WithLabelValues(m.with(r.Tenant, reason)...).Inc()
	}
}

// SessionOpened implements server.Observer.
func (m *Metrics) SessionOpened(tenant string) {
	m.sessions.WithLabelValues(m.with(tenant, "opened")...).Inc()
}

// Committed implements server.Observer.
func (m *Metrics) Committed(c server.CommitInfo) {
	m.sessions.WithLabelValues(m.with(c.Tenant, "committed")...).Inc()
	m.applied.WithLabelValues(m.with(c.Tenant)...).Add(float64(c.Applied))
	for _, k := range c.Conflicts {
		m.conflicts.WithLabelValues(m.with(c.Tenant, k.Strategy)...).Inc()
	}
	m.commitTimes.Observe(c.Duration.Seconds())
}

// RowsPushed implements server.Observer.
func (m *Metrics) RowsPushed(tenant string, rows int) {
	m.pushed.WithLabelValues(m.with(tenant)...).Add(float64(rows))
}

// RowsPulled implements server.Observer.
func (m *Metrics) RowsPulled(tenant string, rows int) {
	m.pulled.WithLabelValues(m.with(tenant)...).Add(float64(rows))
}

// Swept implements server.Observer. The sessions it expired count in
// tether_sessions_total{event="expired"} (of no tenant: the sweep does
// not say whose they were).
func (m *Metrics) Swept(s server.SweepInfo) {
	result := "ok"
	if s.Err != nil {
		result = "error"
	}
	m.sweeps.WithLabelValues(result).Inc()
	for kind, n := range map[string]int{"expired_sessions": s.ExpiredSessions, "tombstones": s.Tombstones,
		"committed_sessions": s.CommittedSessions, "audit_entries": s.AuditEntries, "devices": s.Devices, "schemas": s.Schemas} {
		m.swept.WithLabelValues(kind).Add(float64(n))
	}
	m.sessions.WithLabelValues(m.with("", "expired")...).Add(float64(s.ExpiredSessions))
	if s.Err != nil || s.ActiveDevices == nil {
		return // a sweep cut short counted some tenants only
	}
	if !m.tenant {
		total := 0
		for _, n := range s.ActiveDevices {
			total += n
		}
		m.active.WithLabelValues().Set(float64(total))
		return
	}
	m.active.Reset() // tenants gone since the last sweep
	for tenant, n := range s.ActiveDevices {
		m.active.WithLabelValues(tenant).Set(float64(n))
	}
}
