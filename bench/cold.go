package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wharfhq/wharf/engine"
)

// cold measures the first request of new tenants with the pool full and the
// machine quiet before each: a function without modules and one requiring
// built modules, taking turns, with a `docker run --rm` per request
// (CGI-style) in between as the baseline of what a pool saves; then first
// requests right after a container was removed, without the quiet.
func (e *env) cold(ctx context.Context, n *wnode) ([]Figure, error) {
	c := e.counts()
	deps := depsOf(c, c.coldDeps)
	withDeps := requiringCode(c.coldDeps)
	// The modules are built once before (by the modules figure, or here).
	if err := n.tenantWith("coldprep", withDeps, deps); err != nil {
		return nil, err
	}
	kinds := []struct {
		key, code string
		deps      map[string]string
	}{{"none", fnCode, nil}, {"deps", withDeps, deps}}
	lat := map[string]dist{}
	var cgi dist
	// The slowest first request without modules, and the CPU the hypervisor
	// took meanwhile (10 ms ticks; both CPUs summed).
	var slowest, slowestSteal time.Duration
	stolenDuring := 0 // first requests during which any CPU was stolen
	var calm dist     // first requests without modules during which none was
	for j := 0; j < c.cold; j++ {
		if err := n.poolFull(time.Minute); err != nil {
			return nil, err
		}
		var round, used []string
		for _, k := range kinds {
			name := fmt.Sprintf("cold-%s-%d", k.key, j)
			round = append(round, name)
			d, host, steal, err := n.firstRequest(name, k.code, k.deps)
			if err != nil {
				return nil, err
			}
			used = append(used, host)
			lat[k.key] = append(lat[k.key], d)
			if d > 30*time.Millisecond {
				e.logf("cold: slow first request: %s took %v (%v of CPU stolen meanwhile)", name, d.Round(10*time.Microsecond), steal)
			}
			if steal > 0 {
				stolenDuring++
			} else if k.key == "none" {
				calm = append(calm, d)
			}
			if k.key == "none" && d > slowest {
				slowest, slowestSteal = d, steal
			}
		}
		if j < c.dockerRun {
			d, err := e.dockerRun(ctx)
			if err != nil {
				return nil, err
			}
			cgi = append(cgi, d)
		}
		// Tenants keep their container for life: remove this round's, so the
		// next round starts from the same machine state, not 2 more Node processes.
		for _, name := range round {
			if _, err := n.call("DELETE", "/api/v1/tenants/"+name, n.AdminToken, nil, 204); err != nil {
				return nil, err
			}
		}
		if err := e.gone(ctx, used); err != nil {
			return nil, err
		}
		// Removing containers leaves the engine and the kernel work for a
		// while after they are gone (shims, cgroups, network namespaces);
		// the next round starts on a quiet machine. The churn figures below
		// measure a first request without this pause.
		time.Sleep(c.coldSettle)
	}
	// First requests right after the previous tenant's container was removed:
	// what a cold start costs while the machine still cleans up.
	var churn dist
	for j := 0; j < c.coldChurn; j++ {
		name := fmt.Sprintf("churn-%d", j)
		d, host, _, err := n.firstRequest(name, fnCode, nil)
		if err != nil {
			return nil, err
		}
		churn = append(churn, d)
		if _, err := n.call("DELETE", "/api/v1/tenants/"+name, n.AdminToken, nil, 204); err != nil {
			return nil, err
		}
		if err := e.gone(ctx, []string{host}); err != nil {
			return nil, err
		}
	}
	e.logf("cold: %d tenants of each kind, %d docker runs; the slowest first request (%v) lost %v of CPU to the hypervisor; %d of %d lost some",
		c.cold, len(cgi), slowest.Round(10*time.Microsecond), slowestSteal, stolenDuring, 2*c.cold)
	none, dep := lat["none"], lat["deps"]
	const cgiName = "docker run --rm per request"
	depName := fmt.Sprintf("first request, function requiring %d built modules", len(deps))
	calmFigure := newFigure("cold", "first request, new tenant, p99 of those during which no CPU was stolen", "ms", ms(calm.q(0.99)), nil, "", nil)
	calmFigure.Note = fmt.Sprintf("%d of %d first requests", len(calm), len(none))
	return []Figure{
		newFigure("cold", "first request, new tenant, warm pool, p50", "ms", ms(none.q(0.5)), ptr(ms(cgi.q(0.5))), cgiName, atMost(15)),
		newFigure("cold", "first request, new tenant, warm pool, p99", "ms", ms(none.q(0.99)), ptr(ms(cgi.q(0.99))), cgiName, atMost(50)),
		newFigure("cold", "first request, new tenant, warm pool, max", "ms", ms(none.max()), ptr(ms(cgi.max())), cgiName, nil),
		newFigure("cold", depName+", p50", "ms", ms(dep.q(0.5)), ptr(ms(none.q(0.5))), "no modules", nil),
		newFigure("cold", depName+", p99", "ms", ms(dep.q(0.99)), ptr(ms(none.q(0.99))), "no modules", nil),
		newFigure("cold", depName+", max", "ms", ms(dep.max()), ptr(ms(none.max())), "no modules", nil),
		newFigure("cold", "CPU stolen by the hypervisor during the slowest first request (both CPUs, 10 ms ticks)", "ms", ms(slowestSteal), nil, "", nil),
		newFigure("cold", "first requests during which the hypervisor stole CPU", "requests", float64(stolenDuring), nil, "", nil),
		calmFigure,
		newFigure("cold", "first request right after the previous tenants' containers were removed, p50", "ms", ms(churn.q(0.5)), ptr(ms(none.q(0.5))), "after a quiet second", nil),
		newFigure("cold", "first request right after the previous tenants' containers were removed, p99", "ms", ms(churn.q(0.99)), ptr(ms(none.q(0.99))), "after a quiet second", nil),
	}, nil
}

// gone waits until the containers (ids or names) no longer exist.
func (e *env) gone(ctx context.Context, ids []string) error {
	deadline := time.Now().Add(time.Minute)
	for _, id := range ids {
		for {
			_, err := e.eng.InspectContainer(ctx, id)
			if errors.Is(err, engine.ErrNotFound) {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("container %s still there a minute after its tenant was deleted (%v)", id, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// firstRequest creates a tenant with one function, waits for a full pool and
// times the tenant's first request: a cold start from a warm pool. It also
// returns the container that served it (the function answers its hostname)
// and the CPU the hypervisor stole while the request ran.
func (n *wnode) firstRequest(tenant, code string, deps map[string]string) (d time.Duration, host string, steal time.Duration, err error) {
	if err := n.tenantWith(tenant, code, deps); err != nil {
		return 0, "", 0, err
	}
	if err := n.poolFull(time.Minute); err != nil {
		return 0, "", 0, err
	}
	st0 := stolen()
	d, body, err := timeGet(n.URL + "/run/" + tenant + "/f")
	steal = stolen() - st0
	if err != nil {
		return d, "", steal, err
	}
	var out struct{ Host string }
	if err := json.Unmarshal(body, &out); err != nil || out.Host == "" {
		return d, "", steal, fmt.Errorf("%s answered %q", tenant, body)
	}
	return d, out.Host, steal, nil
}
