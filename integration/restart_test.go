package integration

import (
	"context"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/integration/wharftest"
)

func wharftestArgs(args ...string) []wharftest.Option {
	return []wharftest.Option{wharftest.WithArgs(args...)}
}

// Invariant: SIGTERM drains (exit 0, every container and the network of the
// node removed), and a restart on the same data keeps tenants, tokens and
// functions; the generated admin token is printed once and keeps working.
func TestGracefulRestartKeepsEverything(t *testing.T) {
	t.Parallel()
	n := startNode(t, wharftest.WithAdminToken(""))
	if n.AdminToken == "" {
		t.Fatalf("no generated admin token printed:\n%s", n.Stdout())
	}
	tok := createTenant(t, n, "keep")
	deploy(t, n, tok, "keep", "f", `module.exports = (ctx, cb) => cb(null, {ok: ctx.secrets.S})`,
		map[string]any{"secrets": map[string]string{"S": "kept"}})
	expect(t, do(t, n, "GET", "/run/keep/f", "", nil), 200)
	if len(nodeContainers(t, n.NodeID)) == 0 {
		t.Fatal("no containers while running")
	}

	if err := n.Stop(60 * time.Second); err != nil {
		t.Fatalf("SIGTERM exit: %v\n%s", err, n.Stderr())
	}
	if left := nodeContainers(t, n.NodeID); len(left) != 0 {
		t.Fatalf("%d containers left after SIGTERM", len(left))
	}
	eng, _ := engine.NewDocker()
	defer eng.Close()
	if _, err := eng.InspectNetwork(context.Background(), "wharf-"+n.NodeID); err == nil {
		t.Fatal("network left after SIGTERM")
	}

	admin := n.AdminToken
	if err := n.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n.AdminToken != admin {
		t.Fatal("admin token changed across restart")
	}
	if n.Stdout() != "" && containsAll(n.Stdout(), "shown once") {
		t.Fatal("admin token printed again on restart")
	}
	r := do(t, n, "GET", "/api/v1/tenants", admin, nil)
	expect(t, r, 200)
	if !containsAll(string(r.Body), `"keep"`) {
		t.Fatalf("tenant lost: %s", r.Body)
	}
	expect(t, do(t, n, "GET", "/api/v1/tenants/keep/functions/f", tok, nil), 200)
	r = do(t, n, "GET", "/run/keep/f", "", nil)
	expect(t, r, 200)
	if string(r.Body) != `{"ok":"kept"}` {
		t.Fatalf("after restart: %s", r.Body)
	}
}

// Invariant: after kill -9 the next start reconciles by label: leftover tenant
// containers are removed (never reused), clean pooled ones may be adopted, and
// every tenant is served again.
func TestCrashRestartReconciles(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	tok := createTenant(t, n, "crashy")
	deploy(t, n, tok, "crashy", "who", whoami, nil)
	before := host(t, n, "crashy", "who")
	eventually(t, 20*time.Second, "pool refilled", func() bool { return len(nodeContainers(t, n.NodeID)) >= 3 })
	n.Kill()
	leftovers := nodeContainers(t, n.NodeID)
	if len(leftovers) < 3 {
		t.Fatalf("expected leftovers after kill -9, found %d", len(leftovers))
	}
	if err := n.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := host(t, n, "crashy", "who")
	if after == before {
		t.Fatal("a tenant container from before the crash was reused")
	}
	for _, c := range nodeContainers(t, n.NodeID) {
		if len(before) <= len(c.ID) && c.ID[:len(before)] == before {
			t.Fatal("the old tenant container still exists after reconcile")
		}
	}
	eventually(t, 20*time.Second, "readyz after the pool refilled", func() bool {
		r, err := n.Do("GET", "/readyz", "", nil)
		return err == nil && r.Status == http.StatusOK
	})
}

// Invariant: the copy-paste example printed on first start works as printed.
func TestBannerExampleWorks(t *testing.T) {
	t.Parallel()
	n := startNode(t, wharftest.WithAdminToken(""))
	out := n.Stdout()
	i := strings.Index(out, "Try it:")
	if i < 0 {
		t.Fatalf("no example in the banner:\n%s", out)
	}
	script := "set -e\n" + out[i+len("Try it:"):]
	cmd := exec.Command("bash", "-c", script)
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("example failed: %v\n%s\nscript:\n%s", err, got, script)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(got)), `{"hello":"wharf"}`) {
		t.Fatalf("example printed:\n%s", got)
	}
}
