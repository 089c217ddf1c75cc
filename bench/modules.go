package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// requiringCode is a function that requires the named modules at its top
// level, as functions do, so a cold start pays for Node loading them.
func requiringCode(names []string) string {
	var b strings.Builder
	for i, n := range names {
		fmt.Fprintf(&b, "const m%d = require(%q);\n", i, n)
	}
	b.WriteString("module.exports = function (ctx, cb) { cb(null, {host: require('os').hostname(), n: [")
	for i := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "typeof m%d", i)
	}
	b.WriteString("]}) }")
	return b.String()
}

// depsOf pins the named modules at the versions the run builds.
func depsOf(c counts, names []string) map[string]string {
	deps := map[string]string{}
	for _, n := range names {
		for _, m := range c.modules {
			if m.name == n {
				deps[n] = m.version
			}
		}
	}
	return deps
}

// modules measures first builds (npm in a container, on a fresh store),
// one module at a time, then the time to create a function whose modules are
// built against one without modules, interleaved.
func (e *env) modules(ctx context.Context, n *wnode) ([]Figure, error) {
	c := e.counts()
	tok, err := n.newTenant("modules")
	if err != nil {
		return nil, err
	}
	var figs []Figure
	for _, m := range c.modules {
		d, err := n.put(tok, "modules", "b-"+m.name, `module.exports = cb => cb(null, 1)`, map[string]string{m.name: m.version})
		if err != nil {
			return nil, err
		}
		b, err := n.call("GET", "/api/v1/modules/"+m.name+"@"+m.version, tok, nil, 200)
		if err != nil {
			return nil, err
		}
		var info struct {
			DurationMS float64 `json:"duration_ms"`
		}
		if err := json.Unmarshal(b, &info); err != nil {
			return nil, fmt.Errorf("module %s: %w", m.name, err)
		}
		ref := m.name + "@" + m.version
		figs = append(figs,
			newFigure("modules", "first build "+ref+", PUT ?wait to ready", "s", d.Seconds(), nil, "", nil),
			newFigure("modules", "first build "+ref+", the builder's own time", "s", info.DurationMS/1000, nil, "", nil))
		e.logf("modules: built %s in %v", ref, d.Round(time.Millisecond))
	}
	deps := depsOf(c, c.coldDeps)
	var with, without dist
	for j := 0; j < c.creates; j++ {
		d, err := n.put(tok, "modules", fmt.Sprintf("c%d", j), requiringCode(c.coldDeps), deps)
		if err != nil {
			return nil, err
		}
		with = append(with, d)
		if d, err = n.put(tok, "modules", fmt.Sprintf("p%d", j), fnCode, nil); err != nil {
			return nil, err
		}
		without = append(without, d)
	}
	what := fmt.Sprintf("create a function with %d built modules", len(deps))
	return append(figs,
		newFigure("modules", what+", p50", "ms", ms(with.q(0.5)), ptr(ms(without.q(0.5))), "no modules", atMost(200)),
		newFigure("modules", what+", p99", "ms", ms(with.q(0.99)), ptr(ms(without.q(0.99))), "no modules", nil),
	), nil
}
