package netpolicy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// Runner runs a command with stdin and returns its stdout; an error carries
// the exit status and stderr.
type Runner func(ctx context.Context, stdin, name string, args ...string) (string, error)

// Exec is the Runner that runs real binaries.
func Exec(ctx context.Context, stdin, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Firewall installs and removes one node's rules.
type Firewall struct {
	names  Names
	decide RulesFunc
	fams   []Family
	run    Runner
	log    *slog.Logger

	mu      sync.Mutex // one change at a time: Watch must not reinstall half-removed rules
	removed bool
}

// RulesFunc decides the rules of one family given the chain that sees
// forwarded traffic first.
type RulesFunc func(fam Family, forwardParent string) Ruleset

// Config configures a Firewall.
type Config struct {
	Names  Names
	Policy Policy
	// Rules decides what to install; default: the tenant bridge's Rules
	// under Policy. BuildRules confines a build network instead.
	Rules RulesFunc
	// Families to program; default IPv4, plus IPv6 when the host has it
	// (a container's link-local IPv6 address is a path to the host too).
	Families []Family
	// Run runs the iptables binaries; default Exec.
	Run Runner
}

// New returns a firewall for cfg.
func New(cfg Config, logger *slog.Logger) *Firewall {
	if cfg.Families == nil {
		cfg.Families = []Family{IPv4}
		if hostHasIPv6() {
			cfg.Families = append(cfg.Families, IPv6)
		}
	}
	if cfg.Run == nil {
		cfg.Run = Exec
	}
	if cfg.Rules == nil {
		cfg.Rules = func(fam Family, parent string) Ruleset { return Rules(cfg.Names, cfg.Policy, fam, parent) }
	}
	return &Firewall{names: cfg.Names, decide: cfg.Rules, fams: cfg.Families, run: cfg.Run,
		log: logger.With("component", "netpolicy", "bridge", cfg.Names.Bridge)}
}

func hostHasIPv6() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// Names returns the names the firewall matches and owns.
func (f *Firewall) Names() Names { return f.names }

// Families returns the families the firewall programs.
func (f *Firewall) Families() []Family { return slices.Clone(f.fams) }

// Rules returns the rules Apply installs for fam.
func (f *Firewall) Rules(ctx context.Context, fam Family) Ruleset {
	return f.decide(fam, f.forwardParent(ctx, fam))
}

// Apply installs the rules of every family, replacing whatever the chains
// held: one atomic iptables-restore per family, hooks added only if missing.
// It is what a start does to reconcile, and is safe to repeat.
func (f *Firewall) Apply(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = false
	return f.apply(ctx)
}

func (f *Firewall) apply(ctx context.Context) error {
	for _, fam := range f.fams {
		rs := f.Rules(ctx, fam)
		var missing []Hook
		for _, h := range rs.Hooks {
			if !f.hookPresent(ctx, fam, h) {
				missing = append(missing, h)
			}
		}
		if _, err := f.run(ctx, Script(rs, missing), fam.Restore, "-w", "--noflush"); err != nil {
			return fmt.Errorf("install %s rules: %w", fam.Name, err)
		}
	}
	f.log.Info("firewall rules installed")
	return nil
}

// Check reports what is missing: a hook, a chain, or rules of a chain.
func (f *Firewall) Check(ctx context.Context) error {
	var problems []error
	for _, fam := range f.fams {
		rs := f.Rules(ctx, fam)
		for _, h := range rs.Hooks {
			if !f.hookPresent(ctx, fam, h) {
				problems = append(problems, fmt.Errorf("%s: jump from %s to %s is missing", fam.Name, h.Parent, h.Args[len(h.Args)-1]))
			}
		}
		for _, c := range rs.Order {
			out, err := f.run(ctx, "", fam.Cmd, "-w", "-S", c)
			if err != nil {
				problems = append(problems, fmt.Errorf("%s: chain %s: %w", fam.Name, c, err))
				continue
			}
			if n := countRules(out, c); n != len(rs.Chains[c]) {
				problems = append(problems, fmt.Errorf("%s: chain %s holds %d rules, want %d", fam.Name, c, n, len(rs.Chains[c])))
			}
		}
	}
	return errors.Join(problems...)
}

// Remove deletes the hooks (every copy, from either forward parent) and the
// chains. What is already gone is not an error.
func (f *Firewall) Remove(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = true
	var problems []error
	for _, fam := range f.fams {
		for _, h := range f.everyHook(fam) {
			for i := 0; i < 16 && f.hookPresent(ctx, fam, h); i++ {
				if _, err := f.run(ctx, "", fam.Cmd, append([]string{"-w", "-D", h.Parent}, h.Args...)...); err != nil {
					problems = append(problems, err)
					break
				}
			}
		}
		for _, c := range f.decide(fam, "FORWARD").Order {
			if _, err := f.run(ctx, "", fam.Cmd, "-w", "-S", c); err != nil {
				continue // no such chain
			}
			if _, err := f.run(ctx, "", fam.Cmd, "-w", "-F", c); err != nil {
				problems = append(problems, err)
				continue
			}
			if _, err := f.run(ctx, "", fam.Cmd, "-w", "-X", c); err != nil {
				problems = append(problems, err)
			}
		}
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("remove firewall rules: %w", err)
	}
	f.log.Info("firewall rules removed")
	return nil
}

// Watch re-checks the rules every interval until ctx ends and reinstalls
// them when something removed a part (a firewall reload, a Docker restart);
// after Remove it leaves them removed.
func (f *Firewall) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.repair(ctx)
	}
}

func (f *Firewall) repair(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return
	}
	err := f.Check(ctx)
	if err == nil || ctx.Err() != nil {
		return
	}
	f.log.Warn("firewall rules damaged; reinstalling", "err", err)
	if err := f.apply(ctx); err != nil && ctx.Err() == nil {
		f.log.Error("reinstall firewall rules", "err", err)
	}
}

// everyHook lists the jumps of fam under either forward parent: the one in
// use may have changed since they were installed (Docker started or not).
func (f *Firewall) everyHook(fam Family) []Hook {
	var hooks []Hook
	for _, parent := range []string{"DOCKER-USER", "FORWARD"} {
		for _, h := range f.decide(fam, parent).Hooks {
			if !slices.ContainsFunc(hooks, func(o Hook) bool { return o.Parent == h.Parent && slices.Equal(o.Args, h.Args) }) {
				hooks = append(hooks, h)
			}
		}
	}
	return hooks
}

// forwardParent is DOCKER-USER where Docker manages the family's firewall
// (it jumps there before its own rules), else FORWARD.
func (f *Firewall) forwardParent(ctx context.Context, fam Family) string {
	if _, err := f.run(ctx, "", fam.Cmd, "-w", "-S", "DOCKER-USER"); err == nil {
		return "DOCKER-USER"
	}
	return "FORWARD"
}

func (f *Firewall) hookPresent(ctx context.Context, fam Family, h Hook) bool {
	_, err := f.run(ctx, "", fam.Cmd, append([]string{"-w", "-C", h.Parent}, h.Args...)...)
	return err == nil
}

// countRules counts the rules of chain c in `iptables -S c` output.
func countRules(out, c string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "-A "+c+" ") {
			n++
		}
	}
	return n
}
