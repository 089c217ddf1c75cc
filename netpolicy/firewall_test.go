package netpolicy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func randID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// needIptables fails (not skips) on a machine where the tests are meant to
// run: Wharf's isolation depends on iptables, so its absence is a finding.
func needIptables(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("netpolicy tests program iptables and must run as root")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatal("iptables is not installed")
	}
}

// newFirewall returns a firewall for a fresh bridge name and registers the
// removal of its rules at once, so a failing test leaves nothing behind.
func newFirewall(t *testing.T, pol Policy) *Firewall {
	t.Helper()
	needIptables(t)
	f := New(Config{Names: NamesFor(randID("tf")), Policy: pol}, quiet())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := f.Remove(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return f
}

func iptablesS(t *testing.T, cmd string, args ...string) string {
	t.Helper()
	out, err := exec.Command(cmd, append([]string{"-w", "-S"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s -S %v: %v %s", cmd, args, err, out)
	}
	return string(out)
}

func countLines(s, sub string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// Invariant: Apply installs the chains and one jump each, is idempotent,
// repairs damage; Remove leaves nothing of the node in any chain.
func TestFirewallLifecycle(t *testing.T) {
	ctx := context.Background()
	f := newFirewall(t, Policy{Egress: true})
	n := f.Names()
	if err := f.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Check(ctx); err != nil {
		t.Fatalf("after apply: %v", err)
	}
	fwd := iptablesS(t, "iptables", n.Forward)
	if !strings.Contains(fwd, "-A "+n.Forward+" -d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited") {
		t.Fatalf("metadata rule missing:\n%s", fwd)
	}
	if err := f.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	for _, fam := range f.Families() {
		all := iptablesS(t, fam.Cmd)
		if got := countLines(all, "-i "+n.Bridge+" -j "+n.Input); got != 1 {
			t.Errorf("%s: %d INPUT jumps after two applies, want 1", fam.Name, got)
		}
		if got := countLines(all, "-i "+n.Bridge+" -j "+n.Forward); got != 1 {
			t.Errorf("%s: %d forward jumps after two applies, want 1", fam.Name, got)
		}
		if got := countLines(iptablesS(t, fam.Cmd, n.Forward), "-A "+n.Forward); got != len(f.Rules(ctx, fam).Chains[n.Forward]) {
			t.Errorf("%s: forward chain has %d rules after two applies", fam.Name, got)
		}
	}

	// Damage: a jump deleted and a chain flushed behind Wharf's back.
	if out, err := exec.Command("iptables", "-w", "-D", "INPUT", "-i", n.Bridge, "-j", n.Input).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("iptables", "-w", "-F", n.Forward).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	err := f.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "jump from INPUT") || !strings.Contains(err.Error(), "holds 0 rules") {
		t.Fatalf("check after damage: %v", err)
	}
	if err := f.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Check(ctx); err != nil {
		t.Fatalf("after repair: %v", err)
	}

	if err := f.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	for _, fam := range f.Families() {
		if all := iptablesS(t, fam.Cmd); strings.Contains(all, n.Bridge) || strings.Contains(all, n.Forward) || strings.Contains(all, n.Input) {
			t.Errorf("%s: rules left after remove:\n%s", fam.Name, all)
		}
	}
	if err := f.Remove(ctx); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if err := f.Check(ctx); err == nil {
		t.Fatal("check passes with no rules installed")
	}
}

// Invariant: Watch puts back rules damaged while it runs, and leaves them
// removed after Remove.
func TestFirewallWatchRepairs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFirewall(t, Policy{})
	if err := f.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { f.Watch(ctx, 50*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	n := f.Names()
	for _, args := range [][]string{{"-D", "INPUT", "-i", n.Bridge, "-j", n.Input}, {"-F", n.Forward}} {
		if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.Check(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("rules not reinstalled: %v", f.Check(ctx))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := f.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // four watch periods
	if err := f.Check(ctx); err == nil {
		t.Fatal("watch reinstalled removed rules")
	}
}
