package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/integration/wharftest"
)

// Which tests call t.Parallel: those that spend their time waiting (npm
// builds, container starts, restarts, the store driver's timers) and whose
// time bounds are generous (seconds for what takes a fraction of one). Each
// runs its own node id, data dir, network and firewall chains, and looks only
// at objects carrying its own labels, so they cannot see each other. Tests
// that pin a latency or a tight window (a neighbour's latency under attack,
// 2 s propagation between nodes, a 1 s queue bound, backoff windows, 504s
// timed from a cold start, requests in flight at a given moment, a cluster
// under load, capacity under 6 s of load) or set the environment stay
// serial: Go runs every serial test first, alone, and only then the parallel
// ones together (`make test` runs at most -parallel of them at once).
func TestMain(m *testing.M) {
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration tests need a Docker engine (run `make test`, which starts one): %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	wharftest.RemoveBinary()
	os.Exit(code)
}

// startNode runs a node and registers its cleanup at once.
func startNode(t *testing.T, opts ...wharftest.Option) *wharftest.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n, err := wharftest.Run(ctx, opts...)
	wharftest.CleanupNode(t, n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startStore runs `wharf store` until the test ends and returns its URI.
func startStore(ctx context.Context, t *testing.T) string {
	t.Helper()
	p, uri, err := wharftest.RunStore(ctx)
	wharftest.CleanupProc(t, p)
	if err != nil {
		t.Fatal(err)
	}
	return uri
}

func do(t *testing.T, n *wharftest.Node, method, path, token string, body any) wharftest.Response {
	t.Helper()
	r, err := n.Do(method, path, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func expect(t *testing.T, r wharftest.Response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, r.Body)
	}
}

// createTenant creates a tenant as admin and returns its token.
func createTenant(t *testing.T, n *wharftest.Node, name string) string {
	t.Helper()
	r := do(t, n, "POST", "/api/v1/tenants", n.AdminToken, map[string]string{"name": name})
	expect(t, r, http.StatusCreated)
	var out struct{ Token string }
	if err := r.JSON(&out); err != nil || out.Token == "" {
		t.Fatalf("tenant token: %v %s", err, r.Body)
	}
	return out.Token
}

func deploy(t *testing.T, n *wharftest.Node, token, tenant, name, code string, extra map[string]any) {
	t.Helper()
	body := map[string]any{"code": code}
	for k, v := range extra {
		body[k] = v
	}
	r := do(t, n, "PUT", "/api/v1/tenants/"+tenant+"/functions/"+name, token, body)
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("deploy %s/%s: %d %s", tenant, name, r.Status, r.Body)
	}
}

// whoami answers the container's hostname (its id), so tests see which
// container served a request.
const whoami = `module.exports = function (ctx, cb) { cb(null, {host: require('os').hostname(), q: ctx.query}) }`

func host(t *testing.T, n *wharftest.Node, tenant, fn string) string {
	t.Helper()
	r := do(t, n, "GET", "/run/"+tenant+"/"+fn, "", nil)
	expect(t, r, http.StatusOK)
	var out struct{ Host string }
	if err := json.Unmarshal(r.Body, &out); err != nil || out.Host == "" {
		t.Fatalf("no host in %s", r.Body)
	}
	return out.Host
}

// nodeContainers lists the node's containers on the engine.
func nodeContainers(t *testing.T, nodeID string) []engine.ContainerInfo {
	t.Helper()
	eng, err := engine.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	list, err := eng.ListContainers(context.Background(), map[string]string{engine.LabelNode: nodeID})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
