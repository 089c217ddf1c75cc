package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wharfhq/wharf/handler"
	"github.com/wharfhq/wharf/pool"
)

// statsCollector turns owners' Stats snapshots into metrics at scrape time.
type statsCollector struct {
	pool    func() pool.Stats
	target  func() int
	handler func() handler.Stats

	poolReady, poolCreating, poolWaiting, poolTarget *prometheus.Desc
	poolTakes, poolCreated, poolFailures             *prometheus.Desc
	containers, coldStarts, evictions                *prometheus.Desc
}

// RegisterNode registers the pool's and handler's figures.
func (m *Metrics) RegisterNode(poolStats func() pool.Stats, poolTarget func() int, handlerStats func() handler.Stats) {
	m.reg.MustRegister(&statsCollector{
		pool: poolStats, target: poolTarget, handler: handlerStats,
		poolReady:    prometheus.NewDesc("wharf_pool_ready", "Warm containers ready to be claimed.", nil, nil),
		poolCreating: prometheus.NewDesc("wharf_pool_creating", "Pool containers being created now.", nil, nil),
		poolWaiting:  prometheus.NewDesc("wharf_pool_waiting", "Cold starts waiting for a warm container.", nil, nil),
		poolTarget:   prometheus.NewDesc("wharf_pool_target", "Warm containers the pool currently aims to keep.", nil, nil),
		poolTakes:    prometheus.NewDesc("wharf_pool_takes_total", "Containers claimed from the pool.", nil, nil),
		poolCreated:  prometheus.NewDesc("wharf_pool_creations_total", "Pool containers created and ready.", nil, nil),
		poolFailures: prometheus.NewDesc("wharf_pool_creation_failures_total", "Pool container creations that failed.", nil, nil),
		containers:   prometheus.NewDesc("wharf_containers", "Containers on this node by state.", []string{"state"}, nil),
		coldStarts:   prometheus.NewDesc("wharf_cold_starts_total", "Containers assigned to tenants.", nil, nil),
		evictions:    prometheus.NewDesc("wharf_evictions_total", "Tenant containers removed, by reason.", []string{"reason"}, nil),
	})
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.poolReady, c.poolCreating, c.poolWaiting, c.poolTarget, c.poolTakes,
		c.poolCreated, c.poolFailures, c.containers, c.coldStarts, c.evictions} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ps, hs := c.pool(), c.handler()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.poolReady, float64(ps.Ready))
	gauge(c.poolCreating, float64(ps.Creating))
	gauge(c.poolWaiting, float64(ps.Waiting))
	gauge(c.poolTarget, float64(c.target()))
	counter(c.poolTakes, float64(ps.Takes))
	counter(c.poolCreated, float64(ps.Created))
	counter(c.poolFailures, float64(ps.Failures))
	gauge(c.containers, float64(ps.Ready), "pooled")
	gauge(c.containers, float64(hs.Busy), "busy")
	gauge(c.containers, float64(hs.Assigned-hs.Busy), "idle")
	counter(c.coldStarts, float64(hs.ColdStarts))
	for reason, n := range hs.Evictions {
		counter(c.evictions, float64(n), reason)
	}
}
