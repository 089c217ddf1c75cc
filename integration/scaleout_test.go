package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfhq/wharf/deploy/local/cluster"
)

// The scale-out suite: one local cluster (wharf store, two Wharf nodes in
// containers built FROM scratch from this source, HAProxy health-checking
// /readyz every 200 ms, down after 2 failures) shared by ordered subtests.
// Invariants pinned, in order:
//   - a function created through the load balancer runs on both nodes, each
//     in a container of its own node;
//   - an update made through the load balancer is served by both nodes
//     within 2 s;
//   - a token revoked through one node fails on the other within 2 s;
//   - a module is built once cluster-wide (runs only when the nodes support
//     modules);
//   - killing a node (SIGKILL) mid-load loses fewer than 1% of requests, and
//     none that start after HAProxy marks the node down;
//   - the killed node, started again, rejoins: HAProxy marks it up, it
//     serves the tenant again from a fresh container, and its leftovers from
//     before the crash are gone;
//   - a node drained with SIGTERM under load (the ASG lifecycle hook's
//     `systemctl stop wharf`) loses no request at all.
func TestClusterBehindLoadBalancer(t *testing.T) {
	t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	t.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := cluster.Run(ctx, cluster.WithHealthCheck(cluster.HealthCheck{Interval: 200 * time.Millisecond, Fall: 2, Rise: 2}),
		cluster.WithLog(progressLog{t}))
	cluster.CleanupCluster(t, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster up in %v: %s, nodes %s %s", time.Since(start).Round(time.Millisecond), c.URL, c.Node(0).URL, c.Node(1).URL)
	n1, n2 := c.Node(0), c.Node(1)

	tok := clCreateTenant(t, c.URL, c.AdminToken, "acme")
	var nodeHost [2]string

	ok := t.Run("function created through the LB runs on both nodes", func(t *testing.T) {
		clDeploy(t, c.URL, tok, "acme", "who", `module.exports = (ctx, cb) => cb(null, {v: 1, host: require('os').hostname()})`, nil)
		seen := map[string]bool{}
		for range 10 {
			seen[clWho(t, c.URL+"/run/acme/who").Host] = true
		}
		if len(seen) != 2 {
			t.Fatalf("10 requests through the LB reached %d containers, want 2 (one per node): %v", len(seen), seen)
		}
		for i, n := range c.Nodes() {
			w := clWho(t, n.URL+"/run/acme/who")
			if !seen[w.Host] {
				t.Fatalf("node %s served from %s, not one the LB reached %v", n.ID, w.Host, seen)
			}
			if got := containerLabel(t, w.Host, "wharf.node"); got != n.ID {
				t.Fatalf("node %s served from container %s of node %q", n.ID, w.Host, got)
			}
			nodeHost[i] = w.Host
		}
		if nodeHost[0] == nodeHost[1] {
			t.Fatal("both nodes served from one container")
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("an update reaches both nodes within 2s", func(t *testing.T) {
		clDeploy(t, c.URL, tok, "acme", "who", `module.exports = (ctx, cb) => cb(null, {v: 2, host: require('os').hostname()})`, nil)
		deployed := time.Now()
		for _, n := range c.Nodes() {
			clEventually(t, 2*time.Second-time.Since(deployed), "node "+n.ID+" to serve v2", func() bool {
				return clWhoErr(n.URL+"/run/acme/who").V == 2
			})
		}
		t.Logf("both nodes serve v2 %v after the deploy", time.Since(deployed).Round(time.Millisecond))
	})

	t.Run("a token revoked on one node fails on the other within 2s", func(t *testing.T) {
		var created struct{ ID, Token string }
		r := clCall(t, "POST", n1.URL+"/api/v1/tenants/acme/tokens", tok, map[string]string{"description": "ci"})
		clExpect(t, r, http.StatusCreated)
		if err := json.Unmarshal(r.body, &created); err != nil || created.Token == "" || created.ID == "" {
			t.Fatalf("new token: %v %s", err, r.body)
		}
		clExpect(t, clCall(t, "GET", n2.URL+"/api/v1/tenants/acme/functions", created.Token, nil), http.StatusOK)
		clExpect(t, clCall(t, "DELETE", n1.URL+"/api/v1/tenants/acme/tokens/"+created.ID, tok, nil), http.StatusNoContent)
		revoked := time.Now()
		clEventually(t, 2*time.Second, "the revoked token to fail on the other node", func() bool {
			return clCall(t, "GET", n2.URL+"/api/v1/tenants/acme/functions", created.Token, nil).status == http.StatusUnauthorized
		})
		t.Logf("revoked token refused by the other node %v after the revocation", time.Since(revoked).Round(time.Millisecond))
		// And it stays refused everywhere, while the tenant's first token works.
		for _, u := range []string{n1.URL, n2.URL, c.URL} {
			clExpect(t, clCall(t, "GET", u+"/api/v1/tenants/acme/functions", created.Token, nil), http.StatusUnauthorized)
			clExpect(t, clCall(t, "GET", u+"/api/v1/tenants/acme/functions", tok, nil), http.StatusOK)
		}
	})

	t.Run("a module is built once cluster-wide", func(t *testing.T) {
		testModuleBuiltOnce(t, c)
	})

	ok = t.Run("killing a node mid-load loses <1% and nothing once HAProxy marks it down", func(t *testing.T) {
		var killedAt, downAt time.Time
		res := runLoad(t, c.URL+"/run/acme/who", 4, func() {
			time.Sleep(time.Second)
			killedAt = time.Now()
			if err := n2.Kill(ctx); err != nil {
				t.Errorf("kill: %v", err)
				return
			}
			if err := c.WaitServer(ctx, n2.ID, false, 10*time.Second); err != nil {
				t.Error(err)
				return
			}
			downAt = time.Now()
			time.Sleep(2 * time.Second) // load on one node, after the LB knows
		})
		if killedAt.IsZero() || downAt.IsZero() {
			t.FailNow()
		}
		lost, lostAfterDown := res.failures(), res.failuresSince(downAt)
		st, _ := c.Servers(ctx)
		t.Logf("%d requests in %v; %d failed (%.3f%%); HAProxy marked the node down %v after the kill; "+
			"failed after that: %d; HAProxy retries %+v",
			res.total(), res.duration.Round(time.Millisecond), lost, 100*float64(lost)/float64(max(1, res.total())),
			downAt.Sub(killedAt).Round(time.Millisecond), lostAfterDown, st)
		for _, f := range res.firstFailures(5) {
			t.Logf("failure: %s", f)
		}
		if res.total() < 200 {
			t.Fatalf("only %d requests: the load did not run", res.total())
		}
		if float64(lost) >= 0.01*float64(res.total()) {
			t.Errorf("lost %d of %d requests (>= 1%%)", lost, res.total())
		}
		if lostAfterDown > 0 {
			t.Errorf("%d requests failed after HAProxy marked the node down", lostAfterDown)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("the killed node rejoins when started again", func(t *testing.T) {
		restart := time.Now()
		if err := n2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitServer(ctx, n2.ID, true, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("node ready and marked up by HAProxy %v after its start", time.Since(restart).Round(time.Millisecond))
		// Its container from before the crash was removed when it reconciled.
		if exec.Command("docker", "inspect", nodeHost[1]).Run() == nil {
			t.Errorf("container %s of the killed node still exists after its restart", nodeHost[1])
		}
		w := clWho(t, n2.URL+"/run/acme/who")
		if w.V != 2 || w.Host == nodeHost[1] || containerLabel(t, w.Host, "wharf.node") != n2.ID {
			t.Fatalf("restarted node served %+v (old container %s)", w, nodeHost[1])
		}
		seen := map[string]bool{}
		for range 10 {
			seen[clWho(t, c.URL+"/run/acme/who").Host] = true
		}
		if !seen[w.Host] || len(seen) != 2 {
			t.Fatalf("the LB does not send traffic to the rejoined node: %v", seen)
		}
	})

	t.Run("a node drained with SIGTERM under load loses nothing", func(t *testing.T) {
		var stoppedAt time.Time
		res := runLoad(t, c.URL+"/run/acme/who", 4, func() {
			time.Sleep(time.Second)
			if err := n1.Stop(ctx, 40*time.Second); err != nil {
				t.Errorf("stop: %v", err)
			}
			stoppedAt = time.Now()
			time.Sleep(time.Second)
		})
		t.Logf("%d requests in %v while %s drained; %d failed", res.total(), res.duration.Round(time.Millisecond), n1.ID, res.failures())
		for _, f := range res.firstFailures(5) {
			t.Logf("failure: %s", f)
		}
		if res.failures() > 0 {
			t.Errorf("%d requests failed during a graceful drain", res.failures())
		}
		if stoppedAt.IsZero() {
			t.Fatal("the node did not stop")
		}
		// A drained node leaves nothing behind on the engine.
		if out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=wharf.node="+n1.ID).Output(); len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("drained node left containers: %s", out)
		}
	})
}

// testModuleBuiltOnce: two tenants deploy functions with the same dependency
// at the same moment through different nodes; the module is built once
// (one build attempt) and both functions require it on both nodes. Module
// builds come with the modules work (issue 3): a node that refuses
// dependencies skips this.
func testModuleBuiltOnce(t *testing.T, c *cluster.Cluster) {
	tokB := clCreateTenant(t, c.URL, c.AdminToken, "beta")
	tokA := clLoginAgain(t, c)
	code := `module.exports = (ctx, cb) => cb(null, {ms: require('ms')('1h'), host: require('os').hostname()})`
	body := map[string]any{"code": code, "dependencies": map[string]string{"ms": "2.1.3"}}
	type put struct {
		r   clResp
		err error
	}
	var wg sync.WaitGroup
	res := make([]put, 2)
	for i, p := range []struct{ url, tok, tenant string }{{c.Node(0).URL, tokA, "acme"}, {c.Node(1).URL, tokB, "beta"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := clCallErr("PUT", p.url+"/api/v1/tenants/"+p.tenant+"/functions/ms?wait=180s", p.tok, body, 4*time.Minute)
			res[i] = put{r, err}
		}()
	}
	wg.Wait()
	for _, p := range res {
		if p.err != nil {
			t.Fatal(p.err)
		}
		if p.r.status == http.StatusBadRequest && strings.Contains(string(p.r.body), "dependencies_unsupported") {
			t.Skip("these nodes do not build modules yet (issue 3): the built-once invariant is not checked")
		}
		if p.r.status != http.StatusCreated && p.r.status != http.StatusOK {
			t.Fatalf("deploy with a dependency: %d %s", p.r.status, p.r.body)
		}
		var out struct{ Status string }
		if err := json.Unmarshal(p.r.body, &out); err != nil || out.Status != "ready" {
			t.Fatalf("deploy with a dependency did not end ready: %s", p.r.body)
		}
	}
	r := clCall(t, "GET", c.URL+"/api/v1/modules/ms@2.1.3", tokA, nil)
	clExpect(t, r, http.StatusOK)
	var mod struct {
		Status   string
		Attempts int
		BuiltBy  string `json:"built_by"`
	}
	if err := json.Unmarshal(r.body, &mod); err != nil {
		t.Fatal(err)
	}
	if mod.Status != "ready" || mod.Attempts != 1 {
		t.Fatalf("module ms@2.1.3 after two concurrent deploys on two nodes: %s (want ready, 1 attempt)", r.body)
	}
	for _, n := range c.Nodes() {
		for _, tenant := range []string{"acme", "beta"} {
			var out struct{ Ms int }
			rr := clCall(t, "GET", n.URL+"/run/"+tenant+"/ms", "", nil)
			if rr.status != http.StatusOK || json.Unmarshal(rr.body, &out) != nil || out.Ms != 3600000 {
				t.Fatalf("%s on node %s: %d %s", tenant, n.ID, rr.status, rr.body)
			}
		}
	}
	t.Logf("ms@2.1.3 built once (by %s) for two tenants deploying through two nodes at once", mod.BuiltBy)
}

// clLoginAgain returns a fresh token of acme (the suite's first one stays valid).
func clLoginAgain(t *testing.T, c *cluster.Cluster) string {
	r := clCall(t, "POST", c.URL+"/api/v1/tenants/acme/tokens", c.AdminToken, map[string]string{"description": "modules"})
	clExpect(t, r, http.StatusCreated)
	var out struct{ Token string }
	if err := json.Unmarshal(r.body, &out); err != nil || out.Token == "" {
		t.Fatalf("token: %s", r.body)
	}
	return out.Token
}

// loadResult is what a bounded load run saw.
type loadResult struct {
	mu       sync.Mutex
	reqs     []loadReq
	duration time.Duration
}

type loadReq struct {
	start time.Time
	ok    bool
	what  string
}

func (r *loadResult) total() int { return len(r.reqs) }

func (r *loadResult) failures() int { return r.failuresSince(time.Time{}) }

// failuresSince counts failed requests that started at or after t.
func (r *loadResult) failuresSince(t time.Time) int {
	n := 0
	for _, q := range r.reqs {
		if !q.ok && !q.start.Before(t) {
			n++
		}
	}
	return n
}

func (r *loadResult) firstFailures(n int) []string {
	var out []string
	for _, q := range r.reqs {
		if !q.ok && len(out) < n {
			out = append(out, q.start.Format("15:04:05.000")+" "+q.what)
		}
	}
	return out
}

// runLoad sends GETs to url from workers goroutines (loopback only) while
// during runs, then stops; at most 60 s and 200k requests.
func runLoad(t *testing.T, url string, workers int, during func()) *loadResult {
	t.Helper()
	res := &loadResult{}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	var stop atomic.Bool
	var count atomic.Int64
	begin := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && time.Since(begin) < time.Minute && count.Add(1) <= 200_000 {
				q := loadReq{start: time.Now()}
				resp, err := client.Get(url)
				if err != nil {
					q.what = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					q.ok = resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"host"`))
					if !q.ok {
						q.what = fmt.Sprintf("%d %s", resp.StatusCode, b)
					}
				}
				res.mu.Lock()
				res.reqs = append(res.reqs, q)
				res.mu.Unlock()
			}
		}()
	}
	during()
	stop.Store(true)
	wg.Wait()
	res.duration = time.Since(begin)
	return res
}

type clResp struct {
	status int
	body   []byte
}

func clCallErr(method, url, token string, body any, timeout time.Duration) (clResp, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return clResp{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return clResp{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return clResp{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return clResp{resp.StatusCode, b}, err
}

func clCall(t *testing.T, method, url, token string, body any) clResp {
	t.Helper()
	r, err := clCallErr(method, url, token, body, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func clExpect(t *testing.T, r clResp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

func clCreateTenant(t *testing.T, url, admin, name string) string {
	t.Helper()
	r := clCall(t, "POST", url+"/api/v1/tenants", admin, map[string]string{"name": name})
	clExpect(t, r, http.StatusCreated)
	var out struct{ Token string }
	if err := json.Unmarshal(r.body, &out); err != nil || out.Token == "" {
		t.Fatalf("tenant token: %s", r.body)
	}
	return out.Token
}

func clDeploy(t *testing.T, url, token, tenant, name, code string, extra map[string]any) {
	t.Helper()
	body := map[string]any{"code": code}
	for k, v := range extra {
		body[k] = v
	}
	r := clCall(t, "PUT", url+"/api/v1/tenants/"+tenant+"/functions/"+name, token, body)
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("deploy %s/%s: %d %s", tenant, name, r.status, r.body)
	}
}

type whoAnswer struct {
	V    int
	Host string
}

func clWhoErr(url string) whoAnswer {
	var w whoAnswer
	if r, err := clCallErr("GET", url, "", nil, 10*time.Second); err == nil && r.status == http.StatusOK {
		_ = json.Unmarshal(r.body, &w)
	}
	return w
}

func clWho(t *testing.T, url string) whoAnswer {
	t.Helper()
	r := clCall(t, "GET", url, "", nil)
	clExpect(t, r, http.StatusOK)
	var w whoAnswer
	if err := json.Unmarshal(r.body, &w); err != nil || w.Host == "" {
		t.Fatalf("GET %s: %s", url, r.body)
	}
	return w
}

func clEventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout.Round(time.Millisecond), what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containerLabel(t *testing.T, ref, label string) string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", `{{index .Config.Labels "`+label+`"}}`, ref).Output()
	if err != nil {
		t.Fatalf("docker inspect %s: %v", ref, err)
	}
	return strings.TrimSpace(string(out))
}

// progressLog passes the cluster's own progress lines to the test log.
type progressLog struct{ t *testing.T }

func (p progressLog) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.HasPrefix(line, "cluster ") {
			p.t.Log(line)
		}
	}
	return len(b), nil
}

// Invariant: with tenant affinity (HAProxy hashing the tenant in the path,
// consistently), each tenant's webhooks all reach one node, so the cluster
// holds one container per tenant instead of one per tenant and node; when
// that node dies its tenants move to the other node and are served there.
func TestClusterTenantAffinity(t *testing.T) {
	t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	t.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c, err := cluster.Run(ctx, cluster.WithTenantAffinity(), cluster.WithLog(progressLog{t}),
		cluster.WithHealthCheck(cluster.HealthCheck{Interval: 200 * time.Millisecond, Fall: 2, Rise: 2}))
	cluster.CleanupCluster(t, c)
	if err != nil {
		t.Fatal(err)
	}
	tenants := []string{"t-a", "t-b", "t-c", "t-d", "t-e", "t-f"}
	hostOf := map[string]string{}
	perNode := map[string]int{}
	for _, tenant := range tenants {
		tok := clCreateTenant(t, c.URL, c.AdminToken, tenant)
		clDeploy(t, c.URL, tok, tenant, "who", `module.exports = (ctx, cb) => cb(null, {v: 1, host: require('os').hostname()})`, nil)
		// The legacy alias /api/run/<tenant>/... hashes like /run/<tenant>/...
		for i := range 12 {
			url := c.URL + "/run/" + tenant + "/who"
			if i%2 == 1 {
				url = c.URL + "/api/run/" + tenant + "/who"
			}
			h := clWho(t, url).Host
			if hostOf[tenant] == "" {
				hostOf[tenant] = h
			} else if h != hostOf[tenant] {
				t.Fatalf("tenant %s reached two containers through the LB: %s and %s", tenant, hostOf[tenant], h)
			}
		}
		perNode[containerLabel(t, hostOf[tenant], "wharf.node")]++
	}
	t.Logf("tenants per node: %v", perNode)
	// Only the tenant's own node has a container for it: one per tenant in the cluster.
	for _, n := range c.Nodes() {
		owned := 0
		files, err := filepath.Glob(filepath.Join(c.DataRoot, n.ID, "containers", "*", "owner"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), "t-") {
				owned++
			}
		}
		if owned != perNode[n.ID] {
			t.Errorf("node %s holds %d tenant containers, want %d", n.ID, owned, perNode[n.ID])
		}
	}

	// The node of t-a dies: its tenants are served by the other node.
	var victim *cluster.Node
	for _, n := range c.Nodes() {
		if n.ID == containerLabel(t, hostOf["t-a"], "wharf.node") {
			victim = n
		}
	}
	if err := victim.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitServer(ctx, victim.ID, false, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range tenants {
		w := clWho(t, c.URL+"/run/"+tenant+"/who")
		if containerLabel(t, w.Host, "wharf.node") == victim.ID {
			t.Fatalf("tenant %s still served by the dead node", tenant)
		}
	}
}
