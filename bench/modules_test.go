package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/integration/wharftest"
)

// Function code for the module benchmark. Those that use their dependencies
// require them at the top level, as functions do, so a cold start pays for
// Node loading them; they report how long those require() calls took.
const (
	noDeps    = `module.exports = function (ctx, cb) { cb(null, {ok: true}) }`
	smallDeps = `const t0 = process.hrtime.bigint();
const ms = require('ms'); const debug = require('debug'); const escape = require('escape-html');
const requireMS = Number(process.hrtime.bigint() - t0) / 1e6;
module.exports = function (ctx, cb) { cb(null, {requireMS, ms: ms('1s'), e: escape('<'), d: typeof debug}) }`
	lodashDeps = `const t0 = process.hrtime.bigint();
const ms = require('ms'); const debug = require('debug'); const _ = require('lodash');
const requireMS = Number(process.hrtime.bigint() - t0) / 1e6;
module.exports = function (ctx, cb) { cb(null, {requireMS, ms: ms('1s'), c: _.chunk([1, 2], 1), d: typeof debug}) }`
)

const poolSize = 4

var (
	small3  = map[string]string{"ms": "2.1.3", "debug": "4.3.4", "escape-html": "1.0.3"}
	lodash3 = map[string]string{"ms": "2.1.3", "debug": "4.3.4", "lodash": "4.17.21"}
)

// put stores a function and returns the time the PUT took and its status.
func (n node) put(token, tenant, name, query, code string, deps map[string]string, want int) (time.Duration, string) {
	body := map[string]any{"code": code}
	if deps != nil {
		body["dependencies"] = deps
	}
	start := time.Now()
	b := n.must("PUT", "/api/v1/tenants/"+tenant+"/functions/"+name+query, token, body, want)
	d := time.Since(start)
	var st struct{ Status string }
	_ = json.Unmarshal(b, &st)
	return d, st.Status
}

// containersAtMost waits until the node runs at most max containers.
func (n node) containersAtMost(max int) {
	eng, err := engine.NewDocker()
	if err != nil {
		n.t.Fatal(err)
	}
	defer eng.Close()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		list, err := eng.ListContainers(context.Background(), map[string]string{engine.LabelNode: n.NodeID})
		if err == nil && len(list) <= max {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatalf("the node still runs more than %d containers", max)
}

func (n node) newTenant(name string) string {
	var out struct{ Token string }
	_ = json.Unmarshal(n.must("POST", "/api/v1/tenants", n.AdminToken, map[string]string{"name": name}, 201), &out)
	return out.Token
}

// BenchmarkModules reports, from one run on a fresh store: the first build
// of each module (PUT ?wait until ready, and the builder's own measure);
// the time to create a function whose three modules are built, against a
// function without modules; and the first request of a new tenant (warm
// pool) for a function requiring three built modules, against one requiring
// none, interleaved. Run with -benchtime 1x.
func BenchmarkModules(b *testing.B) {
	ctx := context.Background()
	wn, err := wharftest.Run(ctx, wharftest.WithArgs("--pool-size", fmt.Sprint(poolSize), "--log-level", "warn"))
	wharftest.CleanupNode(b, wn)
	if err != nil {
		b.Fatal(err)
	}
	n := node{wn, b}
	const createN, coldN = 30, 30
	for i := 0; i < b.N; i++ {
		tok := n.newTenant(fmt.Sprintf("build%d", i))
		// First builds, one module at a time.
		for _, m := range []struct{ name, version string }{
			{"ms", "2.1.3"}, {"escape-html", "1.0.3"}, {"debug", "4.3.4"}, {"lodash", "4.17.21"},
		} {
			d, st := n.put(tok, fmt.Sprintf("build%d", i), "b-"+m.name, "?wait=300s", `module.exports = cb => cb(null, 1)`,
				map[string]string{m.name: m.version}, 201)
			if st != "ready" {
				b.Fatalf("%s: %s", m.name, st)
			}
			var info struct {
				DurationMS float64 `json:"duration_ms"`
			}
			_ = json.Unmarshal(n.must("GET", "/api/v1/modules/"+m.name+"@"+m.version, tok, nil, 200), &info)
			b.ReportMetric(d.Seconds(), "build-"+m.name+"-put-s")
			b.ReportMetric(info.DurationMS/1000, "build-"+m.name+"-builder-s")
		}

		// Create time with built modules, against a function without any.
		var withMods, without dist
		for j := 0; j < createN; j++ {
			t := fmt.Sprintf("build%d", i)
			d, st := n.put(tok, t, fmt.Sprintf("c%d", j), "?wait=60s", smallDeps, small3, 201)
			if st != "ready" {
				b.Fatalf("create %d: %s", j, st)
			}
			withMods = append(withMods, d)
			d, _ = n.put(tok, t, fmt.Sprintf("p%d", j), "?wait=60s", noDeps, nil, 201)
			without = append(without, d)
		}
		b.ReportMetric(ms(withMods.q(0.5)), "create-3mods-p50-ms")
		b.ReportMetric(ms(withMods.q(0.99)), "create-3mods-p99-ms")
		b.ReportMetric(ms(without.q(0.5)), "create-nomods-p50-ms")

		// Cold starts: new tenants, pool full before each, interleaved. "declared"
		// declares the three small modules and requires none of them: what
		// provisioning the links costs, without Node loading anything.
		kinds := []struct {
			kind string
			code string
			deps map[string]string
		}{{"none", noDeps, nil}, {"declared", noDeps, small3}, {"small", smallDeps, small3}, {"lodash", lodashDeps, lodash3}}
		cold := map[string]dist{}
		required := map[string]dist{}
		for j := 0; j < coldN; j++ {
			var round []string
			for _, c := range kinds {
				name := fmt.Sprintf("cold%d-%s-%d", i, c.kind, j)
				round = append(round, name)
				ttok := n.newTenant(name)
				if _, st := n.put(ttok, name, "f", "?wait=60s", c.code, c.deps, 201); st != "ready" {
					b.Fatalf("%s: %s", name, st)
				}
				n.poolFull()
				cold[c.kind] = append(cold[c.kind], timeGet(b, n.URL+"/run/"+name+"/f", nil))
				var out struct{ RequireMS float64 }
				_ = json.Unmarshal(n.must("GET", "/run/"+name+"/f", "", nil, 200), &out)
				required[c.kind] = append(required[c.kind], time.Duration(out.RequireMS*float64(time.Millisecond)))
			}
			// Tenants hold their container for life: remove this round's, so
			// 2 cores do not end up running 120 Node processes.
			for _, name := range round {
				n.must("DELETE", "/api/v1/tenants/"+name, n.AdminToken, nil, 204)
			}
			n.containersAtMost(poolSize)
		}
		none := cold["none"].q(0.5)
		b.ReportMetric(ms(none), "cold-nomods-p50-ms")
		for _, k := range []string{"declared", "small", "lodash"} {
			b.ReportMetric(ms(cold[k].q(0.5)), "cold-3"+k+"-p50-ms")
			b.ReportMetric(ms(cold[k].q(0.99)), "cold-3"+k+"-p99-ms")
			b.ReportMetric(float64(cold[k].q(0.5))/float64(none), "cold-3"+k+"/none-p50")
		}
		b.ReportMetric(ms(required["small"].q(0.5)), "require-3small-p50-ms")
		b.ReportMetric(ms(required["lodash"].q(0.5)), "require-3lodash-p50-ms")
	}
	b.Log("builds: one module at a time on a fresh store; create: 30 functions each; cold: 30 new tenants per kind, interleaved, pool full before each")
}
