package integration

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Invariant: each tenant gets its own container, every request of a tenant
// lands on that one container, and the three webtask forms see query, body and
// secrets. Another tenant's token cannot see the first tenant's functions.
func TestTenantsEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	acme := createTenant(t, n, "acme")
	globex := createTenant(t, n, "globex")
	deploy(t, n, acme, "acme", "who", whoami, nil)
	deploy(t, n, globex, "globex", "who", whoami, nil)

	first := host(t, n, "acme", "who")
	for i := 0; i < 20; i++ {
		if h := host(t, n, "acme", "who"); h != first {
			t.Fatalf("request %d of acme served by %s, first by %s", i, h, first)
		}
	}
	if g := host(t, n, "globex", "who"); g == first {
		t.Fatal("two tenants share one container")
	}

	// The three forms, with query, body and secrets.
	deploy(t, n, acme, "acme", "one", `module.exports = function (cb) { cb(null, "one") }`, nil)
	deploy(t, n, acme, "acme", "two", `module.exports = function (ctx, cb) {
		cb(null, {q: ctx.query.x, b: ctx.body && ctx.body.y, s: ctx.secrets.KEY}) }`,
		map[string]any{"secrets": map[string]string{"KEY": "s3cret"}})
	deploy(t, n, acme, "acme", "three", `module.exports = function (ctx, req, res) {
		let body = ''; req.on('data', d => body += d); req.on('end', () => {
			res.writeHead(201, {'content-type': 'text/plain'}); res.end('raw:' + body + ':' + req.url) }) }`, nil)

	r := do(t, n, "GET", "/run/acme/one", "", nil)
	expect(t, r, 200)
	if string(r.Body) != `"one"` {
		t.Fatalf("one: %s", r.Body)
	}
	r = do(t, n, "POST", "/run/acme/two?x=1", "", map[string]string{"y": "2"})
	expect(t, r, 200)
	var two map[string]string
	_ = json.Unmarshal(r.Body, &two)
	if two["q"] != "1" || two["b"] != "2" || two["s"] != "s3cret" {
		t.Fatalf("two: %s", r.Body)
	}
	r = do(t, n, "POST", "/run/acme/three/sub/path?z=9", "", "hello")
	expect(t, r, 201)
	if string(r.Body) != "raw:hello:/api/run/acme/three/sub/path?z=9" {
		t.Fatalf("three: %q", r.Body)
	}
	if r.Header.Get("X-Wt-Response-Source") != "webtask" {
		t.Fatalf("response source %q", r.Header.Get("X-Wt-Response-Source"))
	}
	// The /api/run alias reaches the same function.
	expect(t, do(t, n, "GET", "/api/run/acme/one", "", nil), 200)

	// Another tenant's token: 404, not 403, on the first tenant's functions.
	expect(t, do(t, n, "GET", "/api/v1/tenants/acme/functions/who", globex, nil), http.StatusNotFound)
	expect(t, do(t, n, "GET", "/api/v1/tenants/acme/functions", globex, nil), http.StatusNotFound)
	expect(t, do(t, n, "DELETE", "/api/v1/tenants/acme/functions/who", globex, nil), http.StatusNotFound)
	// Secrets are never returned.
	r = do(t, n, "GET", "/api/v1/tenants/acme/functions/two", acme, nil)
	expect(t, r, 200)
	if strings.Contains(string(r.Body), "s3cret") {
		t.Fatal("secret value returned by the API")
	}
	// Unknown function and unknown tenant: 404 with the JSON error shape.
	r = do(t, n, "GET", "/run/acme/missing", "", nil)
	expect(t, r, 404)
	var e struct{ Error, Code string }
	if err := r.JSON(&e); err != nil || e.Code == "" || e.Error == "" {
		t.Fatalf("error shape: %s", r.Body)
	}
	expect(t, do(t, n, "GET", "/run/nobody/who", "", nil), 404)
}

// Invariant: concurrent first requests of a tenant share one cold start, and
// all of them are answered.
func TestConcurrentColdStartOneContainer(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	tok := createTenant(t, n, "burst")
	deploy(t, n, tok, "burst", "who", whoami, nil)
	var wg sync.WaitGroup
	hosts := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := n.Do("GET", "/run/burst/who", "", nil)
			if err != nil || r.Status != 200 {
				t.Errorf("request: %v %d %s", err, r.Status, r.Body)
				return
			}
			var out struct{ Host string }
			_ = json.Unmarshal(r.Body, &out)
			hosts <- out.Host
		}()
	}
	wg.Wait()
	close(hosts)
	seen := map[string]bool{}
	for h := range hosts {
		seen[h] = true
	}
	if len(seen) != 1 {
		t.Fatalf("20 concurrent first requests used %d containers", len(seen))
	}
}

// Invariant: an update reaches the running container without restarting it,
// and a delete makes the function 404 at once.
func TestUpdateReachesRunningContainer(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	tok := createTenant(t, n, "upd")
	deploy(t, n, tok, "upd", "f", `module.exports = cb => cb(null, {v: 1, host: require('os').hostname(), pid: process.pid})`, nil)
	r := do(t, n, "GET", "/run/upd/f", "", nil)
	expect(t, r, 200)
	var a, b struct {
		V    int
		Host string
		Pid  int
	}
	_ = r.JSON(&a)
	deploy(t, n, tok, "upd", "f", `module.exports = cb => cb(null, {v: 2, host: require('os').hostname(), pid: process.pid})`, nil)
	r = do(t, n, "GET", "/run/upd/f", "", nil)
	expect(t, r, 200)
	_ = r.JSON(&b)
	if a.V != 1 || b.V != 2 {
		t.Fatalf("versions seen %d then %d", a.V, b.V)
	}
	if a.Host != b.Host || a.Pid != b.Pid {
		t.Fatalf("container or runner restarted by an update: %+v -> %+v", a, b)
	}
	expect(t, do(t, n, "DELETE", "/api/v1/tenants/upd/functions/f", tok, nil), http.StatusNoContent)
	expect(t, do(t, n, "GET", "/run/upd/f", "", nil), http.StatusNotFound)
}

// Invariant: a tenant's container that dies is dropped and the next request
// gets a fresh container; the dead one is removed.
func TestDeadContainerIsReplaced(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	tok := createTenant(t, n, "dies")
	deploy(t, n, tok, "dies", "who", whoami, nil)
	first := host(t, n, "dies", "who")
	if out, err := exec.Command("docker", "kill", first).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	var next string
	eventually(t, 10*time.Second, "a fresh container", func() bool {
		r, err := n.Do("GET", "/run/dies/who", "", nil)
		if err != nil || r.Status != 200 {
			return false // a 502 while the death is being noticed is allowed
		}
		var out struct{ Host string }
		_ = r.JSON(&out)
		next = out.Host
		return next != first
	})
	eventually(t, 10*time.Second, "the dead container's removal", func() bool {
		return exec.Command("docker", "inspect", first).Run() != nil
	})
}

// Invariant: a function past its timeout answers 504; a runner whose event
// loop is blocked is replaced, so the tenant recovers by itself.
func TestTimeoutsAndRecovery(t *testing.T) {
	n := startNode(t)
	tok := createTenant(t, n, "slow")
	deploy(t, n, tok, "slow", "never", `module.exports = function (cb) { /* never calls back */ }`,
		map[string]any{"timeout_ms": 300})
	deploy(t, n, tok, "slow", "spin", `module.exports = function (cb) { for (;;) {} }`,
		map[string]any{"timeout_ms": 300})
	deploy(t, n, tok, "slow", "who", whoami, nil)

	start := time.Now()
	r := do(t, n, "GET", "/run/slow/never", "", nil)
	expect(t, r, http.StatusGatewayTimeout)
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("504 after %v", el)
	}
	before := host(t, n, "slow", "who")
	expect(t, do(t, n, "GET", "/run/slow/spin", "", nil), http.StatusGatewayTimeout)
	eventually(t, 15*time.Second, "a fresh container after the blocked one", func() bool {
		r, err := n.Do("GET", "/run/slow/who", "", nil)
		if err != nil || r.Status != 200 {
			return false
		}
		var out struct{ Host string }
		_ = r.JSON(&out)
		return out.Host != before
	})
}

// Invariant: an uncaught asynchronous exception answers 500 and the tenant's
// next request is served (by a fresh container if the runner exited).
func TestAsyncCrashRecovers(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	tok := createTenant(t, n, "crash")
	deploy(t, n, tok, "crash", "boom", `module.exports = function (cb) { setTimeout(() => { throw new Error('kaboom') }, 1) }`, nil)
	deploy(t, n, tok, "crash", "who", whoami, nil)
	r := do(t, n, "GET", "/run/crash/boom", "", nil)
	if r.Status != 500 && r.Status != 502 {
		t.Fatalf("status %d, want 500 (or 502 if the runner died first): %s", r.Status, r.Body)
	}
	eventually(t, 10*time.Second, "the tenant served again", func() bool {
		r, err := n.Do("GET", "/run/crash/who", "", nil)
		return err == nil && r.Status == 200
	})
}

// Invariant: with no warm container to be had in time, a request answers 503
// with Retry-After, and the claim it started still serves the next request.
func TestNoContainerInTime503(t *testing.T) {
	t.Parallel()
	n := startNode(t, wharftestArgs("--pool-size", "0", "--claim-timeout", "20ms")...)
	tok := createTenant(t, n, "wait")
	deploy(t, n, tok, "wait", "who", whoami, nil)
	r := do(t, n, "GET", "/run/wait/who", "", nil)
	expect(t, r, http.StatusServiceUnavailable)
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	eventually(t, 30*time.Second, "the detached claim to serve", func() bool {
		r, err := n.Do("GET", "/run/wait/who", "", nil)
		return err == nil && r.Status == 200
	})
}
