// Package bench measures Wharf against baselines taken in the same run: the
// warm path, cold starts, bursts of new tenants, idle density and module
// builds (issue 9). bench/cmd/wharfbench runs it (`make bench`); it is not a
// test, and only a smoke run of the harness is part of `make test`.
//
// Wharf runs as the built `wharf serve` binary (integration/wharftest), as
// users run it, so its Go runtime is shared neither with this harness (which
// samples cgroups, sends bursts and drives the API) nor with the load
// generator (bench/loadgen, its own process).
package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Groups are the figure groups in the order a run measures them: module
// builds come before cold starts so that they build on a fresh store.
var Groups = []string{"warm", "modules", "cold", "density", "burst", "isolation"}

// Options configure a run.
type Options struct {
	Quick bool     // a smoke run of a few seconds per group: small counts
	Only  []string // groups to run; empty: all
	Repo  string   // the repository root (builds, git commit)
	// RaisedCPUs is the tenant CPU quota of the node compared with the bare
	// server without limits; 0: every core of the machine.
	RaisedCPUs float64
	// NodeEnv is added to every node's environment (KEY=VALUE), to compare a
	// runtime setting such as GOGC against a run without it.
	NodeEnv  []string
	Progress io.Writer // progress lines; nil: none
}

// ParseEnv checks a comma-separated list of KEY=VALUE settings.
func ParseEnv(s string) ([]string, error) {
	return parseList(s, func(kv string) error {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(k, " \t") {
			return fmt.Errorf("node environment %q: want KEY=VALUE", kv)
		}
		return nil
	})
}

// ParseOnly checks a comma-separated list of groups.
func ParseOnly(s string) ([]string, error) {
	return parseList(s, func(g string) error {
		if !slices.Contains(Groups, g) {
			return fmt.Errorf("unknown figure group %q (groups: %s)", g, strings.Join(Groups, ", "))
		}
		return nil
	})
}

// parseList splits a comma-separated flag value into trimmed items, each
// checked by check; empty means none.
func parseList(s string, check func(string) error) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if err := check(item); err != nil {
			return nil, err
		}
		out = append(out, item)
	}
	return out, nil
}

// Run measures the selected groups and returns their figures. A group that
// cannot be measured is listed in Results.Failed with its error and the run
// goes on with the next; the error is only for a harness that cannot start.
func Run(ctx context.Context, opts Options) (Results, error) {
	start := time.Now()
	res := Results{Machine: machineInfo(ctx, opts.Repo), Settings: map[string]string{}}
	e, err := newEnv(ctx, opts)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return res, err
	}
	c := e.counts()
	res.Settings = map[string]string{
		"mode":             map[bool]string{true: "quick", false: "full"}[opts.Quick],
		"image":            e.image.Tag,
		"node":             "wharf serve (built binary), --log-level warn, defaults otherwise; main node --pool-size 4" + nodeEnvNote(opts.NodeEnv),
		"tenant_limits":    fmt.Sprintf("%d MiB, %v CPU, %d pids, %d open files", int64(e.cfg.ContainerMemory)>>20, e.cfg.ContainerCPUs, e.cfg.ContainerPids, e.cfg.ContainerNoFile),
		"warm":             fmt.Sprintf("%d rounds of %v per target and connection count, targets taking turns, after %v of warm-up each; medians of the rounds, overheads the median of each round's difference", c.warmRounds, c.warmRun, c.warmUp),
		"cold":             fmt.Sprintf("%d new tenants per kind, kinds taking turns, pool full and %v of quiet after the previous round's containers are removed; %d docker runs in between; then %d first requests right after a removal", c.cold, c.coldSettle, c.dockerRun, c.coldChurn),
		"burst":            fmt.Sprintf("%d tenants created, then one first request each sent at once; --pool-size %d --pool-max %d; then the same on a node with --container-network engine (the baseline)", c.burst, c.burstPool, c.burstPool),
		"density":          fmt.Sprintf("%d tenants, each after its first request, idle 3 s", c.density),
		"modules":          fmt.Sprintf("%d first builds one at a time on a fresh store; %d creates each kind, taking turns", len(c.modules), c.creates),
		"isolation":        fmt.Sprintf("two nodes, --pool-size 2 each, taking turns: warm load as above, then %d new tenants each", c.isolationCold),
		"raised_cpu_quota": strconv.FormatFloat(raisedCPUs(opts), 'f', -1, 64),
	}
	main, err := e.startNode(ctx, "--pool-size", "4")
	if err != nil {
		return res, err
	}
	run := map[string]func() ([]Figure, error){
		"warm":      func() ([]Figure, error) { return e.warm(ctx, main) },
		"modules":   func() ([]Figure, error) { return e.modules(ctx, main) },
		"cold":      func() ([]Figure, error) { return e.cold(ctx, main) },
		"density":   func() ([]Figure, error) { return e.density(ctx, main) },
		"burst":     func() ([]Figure, error) { return e.burst(ctx) },
		"isolation": func() ([]Figure, error) { return e.isolation(ctx) },
	}
	for _, g := range Groups {
		if len(opts.Only) > 0 && !slices.Contains(opts.Only, g) {
			continue
		}
		if ctx.Err() != nil {
			res.Failed = append(res.Failed, g+": "+ctx.Err().Error())
			continue
		}
		e.logf("%s ...", g)
		gstart := time.Now()
		figs, err := run[g]()
		if err != nil {
			e.logf("%s failed: %v", g, err)
			res.Failed = append(res.Failed, g+": "+err.Error())
			continue
		}
		e.logf("%s done in %v", g, time.Since(gstart).Round(time.Second))
		res.Figures = append(res.Figures, figs...)
	}
	// Every wharf.node label the run used, so a caller can check that
	// nothing of the run is left.
	ids := []string{e.benchID}
	for _, n := range e.nodes {
		ids = append(ids, n.NodeID)
	}
	res.Settings["node_labels"] = strings.Join(ids, ",")
	res.Seconds = time.Since(start).Round(time.Second).Seconds()
	return res, nil
}

func raisedCPUs(o Options) float64 {
	if o.RaisedCPUs > 0 {
		return o.RaisedCPUs
	}
	return float64(runtime.NumCPU())
}

func nodeEnvNote(env []string) string {
	if len(env) == 0 {
		return ""
	}
	return "; environment " + strings.Join(env, " ")
}
