// Command wharfbench measures Wharf against same-run baselines on this
// machine (`make bench`): it prints a table and writes results.json. See the
// README's Benchmarks section for what each figure means.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/wharfhq/wharf/bench"
)

func main() {
	quick := flag.Bool("quick", false, "smoke run: small counts, a few seconds per group (checks the harness, not the targets)")
	out := flag.String("out", "", "results file (default: bench/results.json in the repository)")
	only := flag.String("only", "", "comma-separated groups to run: "+strings.Join(bench.Groups, ","))
	cpus := flag.Float64("raised-cpus", 0, "tenant CPU quota of the node compared with the bare server without limits (default: every core)")
	nodeEnv := flag.String("node-env", "", "comma-separated KEY=VALUE added to every node's environment (e.g. GOGC=400), to compare runtime settings")
	flag.Parse()
	if err := run(*quick, *out, *only, *cpus, *nodeEnv); err != nil {
		fmt.Fprintln(os.Stderr, "wharfbench:", err)
		os.Exit(1)
	}
}

func run(quick bool, out, only string, cpus float64, nodeEnv string) error {
	groups, err := bench.ParseOnly(only)
	if err != nil {
		return err
	}
	env, err := bench.ParseEnv(nodeEnv)
	if err != nil {
		return err
	}
	if cpus < 0 || cpus > 64 {
		return fmt.Errorf("-raised-cpus %v must be between 0 and 64", cpus)
	}
	repo, err := repoRoot()
	if err != nil {
		return err
	}
	if out == "" {
		out = filepath.Join(repo, "bench", "results.json")
	}
	// Interrupted, the run still stops its nodes and removes its containers.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, bench.Options{Quick: quick, Only: groups, Repo: repo, RaisedCPUs: cpus, NodeEnv: env, Progress: os.Stderr})
	if err != nil {
		return err
	}
	res.PrintTable(os.Stdout)
	if err := res.WriteJSON(out); err != nil {
		return err
	}
	fmt.Println("wrote", out)
	if missed := res.Failures(); len(missed) > 0 {
		fmt.Printf("targets missed: %s\n", strings.Join(missed, "; "))
	}
	if len(res.Failed) > 0 {
		return fmt.Errorf("%d figure groups could not be measured", len(res.Failed))
	}
	return nil
}

// repoRoot is the nearest directory up from here holding Wharf's go.mod: the
// harness builds the wharf binary and the load generator from it.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/wharfhq/wharf\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the Wharf repository (no go.mod of github.com/wharfhq/wharf above here)")
		}
		dir = parent
	}
}
