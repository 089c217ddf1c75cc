// Package metrics exposes a node's Prometheus metrics. Request-path figures
// are pushed by the proxy; pool, container and eviction figures are pulled
// from their owners' Stats at scrape time, so those packages stay free of
// any metrics dependency.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure Metrics.
type Options struct {
	// TenantLabel adds a tenant label to request metrics. Off by default:
	// one series per tenant is fine for a small installation, not a large one.
	TenantLabel bool
}

// Metrics holds a node's collectors in its own registry.
type Metrics struct {
	reg         *prometheus.Registry
	tenantLabel bool

	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	coldPhase   *prometheus.HistogramVec
	proxyErrors *prometheus.CounterVec
	storeOps    *prometheus.HistogramVec
}

// Latency buckets from 100 µs to 30 s: warm requests live in the first few.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New returns metrics with Go runtime and process collectors registered.
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), tenantLabel: opts.TenantLabel}
	reqLabels := []string{"path", "code"}
	durLabels := []string{"path"}
	if opts.TenantLabel {
		reqLabels = append(reqLabels, "tenant")
		durLabels = append(durLabels, "tenant")
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wharf_requests_total", Help: "Function invocations by path (warm: the tenant had a container; cold: claimed one) and HTTP status.",
	}, reqLabels)
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "wharf_request_duration_seconds", Help: "Function invocation latency as the proxy sees it, by path (warm/cold).",
		Buckets: latencyBuckets,
	}, durLabels)
	m.coldPhase = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "wharf_cold_start_phase_seconds", Help: "Cold start phases: claim (container from the pool), provision (function files), first_byte (runner's first response byte).",
		Buckets: latencyBuckets,
	}, []string{"phase"})
	m.proxyErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wharf_proxy_errors_total", Help: "Invocations the proxy answered itself with an error, by HTTP status.",
	}, []string{"code"})
	m.storeOps = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "wharf_store_operation_seconds", Help: "Latency of store operations made by the node, by operation and outcome.",
		Buckets: latencyBuckets,
	}, []string{"op", "outcome"})
	m.reg.MustRegister(m.requests, m.duration, m.coldPhase, m.proxyErrors, m.storeOps,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry exposes the registry (tests, extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func path(cold bool) string {
	if cold {
		return "cold"
	}
	return "warm"
}

// Request records one invocation.
func (m *Metrics) Request(tenant string, cold bool, status int, d time.Duration) {
	code := strconv.Itoa(status)
	if m.tenantLabel {
		m.requests.WithLabelValues(path(cold), code, tenant).Inc()
		m.duration.WithLabelValues(path(cold), tenant).Observe(d.Seconds())
		return
	}
	m.requests.WithLabelValues(path(cold), code).Inc()
	m.duration.WithLabelValues(path(cold)).Observe(d.Seconds())
}

// ColdStart records the phases of one cold start.
func (m *Metrics) ColdStart(claim, provision, firstByte time.Duration) {
	m.coldPhase.WithLabelValues("claim").Observe(claim.Seconds())
	m.coldPhase.WithLabelValues("provision").Observe(provision.Seconds())
	if firstByte > 0 {
		m.coldPhase.WithLabelValues("first_byte").Observe(firstByte.Seconds())
	}
}

// ProxyError counts an error the proxy answered itself.
func (m *Metrics) ProxyError(status int) {
	m.proxyErrors.WithLabelValues(strconv.Itoa(status)).Inc()
}

// StoreOp records one store operation.
func (m *Metrics) StoreOp(op string, d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.storeOps.WithLabelValues(op, outcome).Observe(d.Seconds())
}
