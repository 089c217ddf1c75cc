package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/wharfhq/wharf/netattach"
)

// warmTarget is one way to reach the trivial function.
type warmTarget struct {
	key, url, headers string
}

// warm measures the warm path: Wharf against the same function as a bare Node
// server of the same image on its bridge IP, with the tenant limits (apples to
// apples) and without; and a node whose tenant CPU quota is raised to every
// core against the unlimited bare server. Three more baselines split Wharf's
// cost: its runner reached directly, the runner behind a byte relay (the
// floor of any proxy hop) and behind a plain httputil.ReverseProxy (the
// naive design's proxy). The load generator is its own process (loadRounds).
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
	if info.IP == "" {
		// The node connected it itself (netattach): the engine does not know
		// the address, the container's label does.
		info.IP = info.Labels[netattach.LabelIP]
	}
	if info.IP == "" {
		return nil, fmt.Errorf("container %s has no address", out.Host)
	}
	const runnerHeaders = "X-Wharf-Route: f@1; X-Request-Id: bench"
	relayAddr, stopRelay, err := e.startRelay(ctx, info.IP+":8080", false)
	if err != nil {
		return nil, err
	}
	defer stopRelay()
	rpAddr, stopRP, err := e.startRelay(ctx, info.IP+":8080", true)
	if err != nil {
		return nil, err
	}
	defer stopRP()
	targets = append(targets, warmTarget{key: "wharf", url: wurl},
		warmTarget{key: "direct", url: "http://" + info.IP + ":8080/api/run/warm/f", headers: runnerHeaders},
		warmTarget{key: "relay", url: "http://" + relayAddr + "/api/run/warm/f", headers: runnerHeaders},
		warmTarget{key: "revproxy", url: "http://" + rpAddr + "/api/run/warm/f", headers: runnerHeaders},
		warmTarget{key: "raised", url: raised.URL + "/run/warm/f"})
	for _, limited := range []bool{true, false} {
		id, url, err := e.startBare(ctx, limited)
		defer e.removeBare(id)
		if err != nil {
			return nil, err
		}
		targets = append(targets, warmTarget{key: map[bool]string{true: "bare", false: "bareUnlimited"}[limited], url: url})
	}

	lr, err := e.loadRounds(ctx, "warm", targets)
	if err != nil {
		return nil, err
	}
	m := func(v func(lgResult) float64, target string, conns int) float64 { return lr.median(v, target, conns) }
	base := func(v func(lgResult) float64, target string, conns int) *float64 { return ptr(m(v, target, conns)) }
	const bare, bareU = "bare, tenant limits", "bare, no limits"
	const naive = "runner behind httputil.ReverseProxy"
	raisedName := fmt.Sprintf("--container-cpus %s: ", strconv.FormatFloat(cpus, 'f', -1, 64))
	return []Figure{
		newFigure("warm", "1 conn p50", "ms", m(p50of, "wharf", 1), base(p50of, "bare", 1), bare, nil),
		newFigure("warm", "1 conn p50 overhead (Wharf - bare)", "ms", lr.medianDiff(p50of, "wharf", "bare", 1), nil, "", atMost(0.2)),
		newFigure("warm", "1 conn p99", "ms", m(p99of, "wharf", 1), base(p99of, "bare", 1), bare, nil),
		newFigure("warm", "1 conn p50, runner direct (no proxy)", "ms", m(p50of, "direct", 1), base(p50of, "bare", 1), bare, nil),
		newFigure("warm", "1 conn p50, runner behind a byte relay (floor of any proxy hop)", "ms", m(p50of, "relay", 1), base(p50of, "direct", 1), "runner direct", nil),
		newFigure("warm", "1 conn p50, Wharf's own work (Wharf - byte relay)", "ms", lr.medianDiff(p50of, "wharf", "relay", 1), nil, "", nil),
		newFigure("warm", "1 conn p50, Wharf vs a plain httputil.ReverseProxy", "ms", m(p50of, "wharf", 1), base(p50of, "revproxy", 1), naive, nil),
		newFigure("warm", "1 conn throughput", "req/s", m(rpsOf, "wharf", 1), base(rpsOf, "bare", 1), bare, nil),
		newFigure("warm", "16 conns throughput", "req/s", m(rpsOf, "wharf", 16), base(rpsOf, "bare", 16), bare, ratioAtLeast(0.5)),
		newFigure("warm", "16 conns p99", "ms", m(p99of, "wharf", 16), base(p99of, "bare", 16), bare, nil),
		newFigure("warm", "16 conns throughput, runner direct (no proxy)", "req/s", m(rpsOf, "direct", 16), base(rpsOf, "bare", 16), bare, nil),
		newFigure("warm", "16 conns throughput, runner behind a byte relay", "req/s", m(rpsOf, "relay", 16), base(rpsOf, "direct", 16), "runner direct", nil),
		newFigure("warm", "16 conns throughput, Wharf vs a plain httputil.ReverseProxy", "req/s", m(rpsOf, "wharf", 16), base(rpsOf, "revproxy", 16), naive, nil),
		newFigure("warm", "16 conns throughput, Wharf vs byte relay", "req/s", m(rpsOf, "wharf", 16), base(rpsOf, "relay", 16), "runner behind a byte relay", nil),
		// No baseline: a machine with nothing stolen has a zero one.
		newFigure("warm", "CPU stolen by the hypervisor during Wharf's 16-conn runs (share of every CPU)", "%", 100*m(stolenOf, "wharf", 16), nil, "", nil),
		newFigure("warm", "CPU stolen by the hypervisor during the bare server's 16-conn runs (tenant limits)", "%", 100*m(stolenOf, "bare", 16), nil, "", nil),
		newFigure("warm", raisedName+"16 conns throughput", "req/s", m(rpsOf, "raised", 16), base(rpsOf, "bareUnlimited", 16), bareU, nil),
		newFigure("warm", raisedName+"1 conn p50", "ms", m(p50of, "raised", 1), base(p50of, "bareUnlimited", 1), bareU, nil),
	}, nil
}

func rpsOf(r lgResult) float64 { return r.RPS }
func p50of(r lgResult) float64 { return r.P50ms }
func p99of(r lgResult) float64 { return r.P99ms }

// stolenOf: the two paths are measured seconds apart, and the hypervisor may
// take CPU during one and not the other; reported so a reader can tell.
func stolenOf(r lgResult) float64 { return r.StolenShare }

// loadResults are the load generator's results per target and connection
// count, one per round.
type loadResults map[string]map[int][]lgResult

// median is the median over the rounds of one quantity.
func (l loadResults) median(v func(lgResult) float64, target string, conns int) float64 {
	var vals []float64
	for _, r := range l[target][conns] {
		vals = append(vals, v(r))
	}
	return median(vals)
}

// medianDiff is the median over the rounds of a's quantity less b's in the
// same round: the two ran seconds apart, so the machine's drift between
// rounds cancels out of each difference.
func (l loadResults) medianDiff(v func(lgResult) float64, a, b string, conns int) float64 {
	ra, rb := l[a][conns], l[b][conns]
	var d []float64
	for i := 0; i < len(ra) && i < len(rb); i++ {
		d = append(d, v(ra[i])-v(rb[i]))
	}
	return median(d)
}

// loadRounds warms every target up, then loads each at 1 and at 16
// connections, the targets taking turns, round after round, so drift in the
// machine's load hits every target alike.
func (e *env) loadRounds(ctx context.Context, group string, targets []warmTarget) (loadResults, error) {
	c := e.counts()
	for _, t := range targets { // JIT and connections of every path warm
		if _, err := e.load(ctx, t.url, t.headers, 16, c.warmUp); err != nil {
			return nil, err
		}
	}
	out := loadResults{}
	for round := 0; round < c.warmRounds; round++ {
		for _, conns := range []int{1, 16} {
			for _, t := range targets {
				r, err := e.load(ctx, t.url, t.headers, conns, c.warmRun)
				if err != nil {
					return nil, err
				}
				if out[t.key] == nil {
					out[t.key] = map[int][]lgResult{}
				}
				out[t.key][conns] = append(out[t.key][conns], r)
			}
		}
		e.logf("%s: round %d of %d done", group, round+1, c.warmRounds)
	}
	return out, nil
}

// counts are the sizes of a run: full, or -quick (a smoke run of the harness).
type counts struct {
	warmUp, warmRun  time.Duration
	warmRounds       int
	cold, dockerRun  int
	coldChurn        int           // first requests right after the previous tenant's container was removed
	coldSettle       time.Duration // quiet time after a round's containers are removed
	burst, burstPool int
	density          int
	modules          []module // built one at a time, in this order
	coldDeps         []string // names of modules the cold-start function requires
	creates          int
	isolationCold    int
}

type module struct{ name, version string }

func (e *env) counts() counts {
	if e.opts.Quick {
		return counts{warmUp: 100 * time.Millisecond, warmRun: 200 * time.Millisecond, warmRounds: 1,
			cold: 3, dockerRun: 2, coldChurn: 2, coldSettle: 100 * time.Millisecond, burst: 4, burstPool: 2, density: 2,
			modules: []module{{"ms", "2.1.3"}}, coldDeps: []string{"ms"}, creates: 2, isolationCold: 2}
	}
	return counts{warmUp: time.Second, warmRun: 2 * time.Second, warmRounds: 5,
		cold: 100, dockerRun: 10, coldChurn: 30, coldSettle: time.Second, burst: 100, burstPool: 8, density: 10,
		modules:  []module{{"ms", "2.1.3"}, {"escape-html", "1.0.3"}, {"debug", "4.3.4"}, {"lodash", "4.17.21"}},
		coldDeps: []string{"ms", "debug", "escape-html"}, creates: 30, isolationCold: 20}
}
