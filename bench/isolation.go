package bench

import (
	"context"
	"fmt"
	"time"
)

// isolation measures what Wharf's seccomp profile, firewall rules and pids
// watchdog cost: a node as shipped against a node in the same run with
// Docker's default seccomp profile and neither rules nor watchdog, the two
// taking turns for warm load and for first requests of new tenants.
func (e *env) isolation(ctx context.Context) ([]Figure, error) {
	hard, err := e.startNode(ctx, "--pool-size", "2")
	if err != nil {
		return nil, err
	}
	defer hard.stop()
	loose, err := e.startNode(ctx, "--pool-size", "2", "--seccomp-profile", "engine-default", "--firewall=false", "--health-interval", "0")
	if err != nil {
		return nil, err
	}
	defer loose.stop()
	nodes := map[string]*wnode{"hard": hard, "loose": loose}
	var targets []warmTarget
	for _, key := range []string{"hard", "loose"} {
		if err := nodes[key].tenantWith("warm", fnCode, nil); err != nil {
			return nil, err
		}
		targets = append(targets, warmTarget{key: key, url: nodes[key].URL + "/run/warm/f"})
	}
	lr, err := e.loadRounds(ctx, "isolation", targets)
	if err != nil {
		return nil, err
	}
	cold := map[string]dist{}
	other := map[string]string{"hard": "loose", "loose": "hard"}
	for j := 0; j < e.counts().isolationCold; j++ {
		for _, key := range []string{"hard", "loose"} {
			// The other node refills the container its last first request
			// took: wait for it, so neither cold start shares the CPU with
			// the other node's container creation.
			if err := nodes[other[key]].poolFull(time.Minute); err != nil {
				return nil, err
			}
			d, _, _, err := nodes[key].firstRequest(fmt.Sprintf("cold-%d", j), fnCode, nil)
			if err != nil {
				return nil, err
			}
			cold[key] = append(cold[key], d)
		}
	}
	const loosely = "Docker's seccomp, no firewall, no watchdog"
	fig := func(name, unit string, v func(lgResult) float64, conns int) Figure {
		return newFigure("isolation", name, unit, lr.median(v, "hard", conns), ptr(lr.median(v, "loose", conns)), loosely, nil)
	}
	return []Figure{
		fig("as shipped: warm 1 conn p50", "ms", p50of, 1),
		fig("as shipped: warm 1 conn p99", "ms", p99of, 1),
		fig("as shipped: warm 16 conns throughput", "req/s", rpsOf, 16),
		newFigure("isolation", "as shipped: first request, new tenant, p50", "ms", ms(cold["hard"].q(0.5)), ptr(ms(cold["loose"].q(0.5))), loosely, nil),
		newFigure("isolation", "as shipped: first request, new tenant, p99", "ms", ms(cold["hard"].q(0.99)), ptr(ms(cold["loose"].q(0.99))), loosely, nil),
	}, nil
}
