package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// warmTarget is one way to reach the trivial function.
type warmTarget struct {
	key, url, headers string
}

// warm measures the warm path: Wharf against the same function as a bare Node
// server of the same image on its bridge IP, with the tenant limits (apples to
// apples) and without; and a node whose tenant CPU quota is raised to every
// core against the unlimited bare server. The load generator is its own
// process; the targets take turns, round after round, so drift in the
// machine's load hits every target alike.
func (e *env) warm(ctx context.Context, main *wnode) ([]Figure, error) {
	cpus := raisedCPUs(e.opts)
	raised, err := e.startNode(ctx, "--pool-size", "1", "--container-cpus", strconv.FormatFloat(cpus, 'f', -1, 64))
	if err != nil {
		return nil, fmt.Errorf("node with raised CPU quota: %w", err)
	}
	defer raised.stop()

	var targets []warmTarget
	for _, n := range []*wnode{main, raised} {
		if err := n.tenantWith("warm", fnCode, nil); err != nil {
			return nil, err
		}
	}
	wurl := main.URL + "/run/warm/f"
	_, body, err := timeGet(wurl)
	if err != nil {
		return nil, err
	}
	// The function answers its container's hostname: reach that container
	// directly, as the proxy does, to split Wharf's cost into proxy and runner.
	var out struct{ Host string }
	if err := json.Unmarshal(body, &out); err != nil || out.Host == "" {
		return nil, fmt.Errorf("warm function answered %q", body)
	}
	info, err := e.eng.InspectContainer(ctx, out.Host)
	if err != nil {
		return nil, err
	}
	targets = append(targets, warmTarget{key: "wharf", url: wurl},
		warmTarget{key: "direct", url: "http://" + info.IP + ":8080/api/run/warm/f",
			headers: "X-Wharf-Function: f; X-Wharf-Version: 1; X-Wharf-Request-Id: bench"},
		warmTarget{key: "raised", url: raised.URL + "/run/warm/f"})
	for _, limited := range []bool{true, false} {
		id, url, err := e.startBare(ctx, limited)
		defer e.removeBare(id)
		if err != nil {
			return nil, err
		}
		targets = append(targets, warmTarget{key: map[bool]string{true: "bare", false: "bareUnlimited"}[limited], url: url})
	}

	c := e.counts()
	for _, t := range targets { // JIT and connections of every path warm
		if _, err := e.load(ctx, t.url, t.headers, 16, c.warmUp); err != nil {
			return nil, err
		}
	}
	type key struct {
		target string
		conns  int
	}
	rps, p50, p99 := map[key][]float64{}, map[key][]float64{}, map[key][]float64{}
	for round := 0; round < c.warmRounds; round++ {
		for _, conns := range []int{1, 16} {
			for _, t := range targets {
				r, err := e.load(ctx, t.url, t.headers, conns, c.warmRun)
				if err != nil {
					return nil, err
				}
				k := key{t.key, conns}
				rps[k], p50[k], p99[k] = append(rps[k], r.RPS), append(p50[k], r.P50ms), append(p99[k], r.P99ms)
			}
		}
		e.logf("warm: round %d of %d done", round+1, c.warmRounds)
	}
	m := func(v map[key][]float64, target string, conns int) float64 { return median(v[key{target, conns}]) }
	base := func(v map[key][]float64, target string, conns int) *float64 { return ptr(m(v, target, conns)) }
	const bare, bareU = "bare, tenant limits", "bare, no limits"
	raisedName := fmt.Sprintf("--container-cpus %s: ", strconv.FormatFloat(cpus, 'f', -1, 64))
	return []Figure{
		newFigure("warm", "1 conn p50", "ms", m(p50, "wharf", 1), base(p50, "bare", 1), bare, nil),
		newFigure("warm", "1 conn p50 overhead (Wharf - bare)", "ms", m(p50, "wharf", 1)-m(p50, "bare", 1), nil, "", atMost(0.2)),
		newFigure("warm", "1 conn p99", "ms", m(p99, "wharf", 1), base(p99, "bare", 1), bare, nil),
		newFigure("warm", "1 conn p50, runner direct (no proxy)", "ms", m(p50, "direct", 1), base(p50, "bare", 1), bare, nil),
		newFigure("warm", "1 conn throughput", "req/s", m(rps, "wharf", 1), base(rps, "bare", 1), bare, nil),
		newFigure("warm", "16 conns throughput", "req/s", m(rps, "wharf", 16), base(rps, "bare", 16), bare, ratioAtLeast(0.5)),
		newFigure("warm", "16 conns p99", "ms", m(p99, "wharf", 16), base(p99, "bare", 16), bare, nil),
		newFigure("warm", "16 conns throughput, runner direct (no proxy)", "req/s", m(rps, "direct", 16), base(rps, "bare", 16), bare, nil),
		newFigure("warm", raisedName+"16 conns throughput", "req/s", m(rps, "raised", 16), base(rps, "bareUnlimited", 16), bareU, nil),
		newFigure("warm", raisedName+"1 conn p50", "ms", m(p50, "raised", 1), base(p50, "bareUnlimited", 1), bareU, nil),
	}, nil
}

// counts are the sizes of a run: full, or -quick (a smoke run of the harness).
type counts struct {
	warmUp, warmRun  time.Duration
	warmRounds       int
	cold, dockerRun  int
	burst, burstPool int
	density          int
	modules          []module // built one at a time, in this order
	coldDeps         []string // names of modules the cold-start function requires
	creates          int
}

type module struct{ name, version string }

func (e *env) counts() counts {
	if e.opts.Quick {
		return counts{warmUp: 100 * time.Millisecond, warmRun: 200 * time.Millisecond, warmRounds: 1,
			cold: 3, dockerRun: 2, burst: 4, burstPool: 2, density: 2,
			modules: []module{{"ms", "2.1.3"}}, coldDeps: []string{"ms"}, creates: 2}
	}
	return counts{warmUp: time.Second, warmRun: 2 * time.Second, warmRounds: 3,
		cold: 30, dockerRun: 10, burst: 100, burstPool: 8, density: 10,
		modules:  []module{{"ms", "2.1.3"}, {"escape-html", "1.0.3"}, {"debug", "4.3.4"}, {"lodash", "4.17.21"}},
		coldDeps: []string{"ms", "debug", "escape-html"}, creates: 30}
}
