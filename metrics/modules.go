package metrics

import "github.com/prometheus/client_golang/prometheus"

// RegisterModules registers module build and cache figures; builds is nil on
// a node that runs no builder.
func (m *Metrics) RegisterModules(builds, unpacks, hits func() int64) {
	counter := func(name, help string, f func() int64) {
		if f != nil {
			m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
				func() float64 { return float64(f()) }))
		}
	}
	counter("wharf_module_builds_total", "Module builds this node's builder finished.", builds)
	counter("wharf_module_unpacks_total", "Module closures downloaded and unpacked onto this node.", unpacks)
	counter("wharf_module_cache_hits_total", "Module needs met by a closure already on this node.", hits)
}
