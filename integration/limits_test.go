package integration

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/integration/wharftest"
	"github.com/wharfhq/wharf/netpolicy"
)

// Invariant: a tenant gets --tenant-concurrency requests running at once;
// the next waits up to --tenant-queue-timeout in a queue of --tenant-queue,
// then answers 429 too_many_requests with Retry-After, while another tenant
// is served as usual.
func TestTenantConcurrencyLimit(t *testing.T) {
	n := startNode(t, wharftestArgs("--tenant-concurrency", "2", "--tenant-queue", "1", "--tenant-queue-timeout", "300ms")...)
	tok := createTenant(t, n, "flood")
	deploy(t, n, tok, "flood", "slow", `module.exports = function (cb) { setTimeout(() => cb(null, {ok: true}), 1500) }`, nil)
	other := createTenant(t, n, "calm")
	deploy(t, n, other, "calm", "who", whoami, nil)
	host(t, n, "calm", "who")
	expect(t, do(t, n, "GET", "/run/flood/slow", "", nil), 200) // warm

	var wg sync.WaitGroup
	results := make(chan wharftest.Response, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := n.Do("GET", "/run/flood/slow", "", nil)
			if err != nil {
				t.Error(err)
				return
			}
			results <- r
		}()
	}
	time.Sleep(100 * time.Millisecond)
	// Another tenant is not queued behind the flood.
	start := time.Now()
	host(t, n, "calm", "who")
	if el := time.Since(start); el > time.Second {
		t.Errorf("the other tenant waited %v", el)
	}
	wg.Wait()
	close(results)
	ok, limited := 0, 0
	for r := range results {
		switch r.Status {
		case 200:
			ok++
		case http.StatusTooManyRequests:
			limited++
			var e struct{ Code string }
			if err := r.JSON(&e); err != nil || e.Code != "too_many_requests" || r.Header.Get("Retry-After") == "" {
				t.Errorf("429 without its code or Retry-After: %s %v", r.Body, r.Header)
			}
		default:
			t.Errorf("unexpected %d %s", r.Status, r.Body)
		}
	}
	// Two run; the queued one times out after 300 ms (the running ones take 1.5 s).
	if ok != 2 || limited != 4 {
		t.Errorf("%d answered, %d limited; want 2 and 4", ok, limited)
	}
}

// Invariant: a response over --max-response is refused with 502
// response_too_large when its length is declared, cut off when it streams,
// and never blamed on the container; smaller ones pass whole.
func TestResponseSizeLimit(t *testing.T) {
	t.Parallel()
	n := startNode(t, wharftestArgs("--max-response", "64k")...)
	tok := createTenant(t, n, "big")
	deploy(t, n, tok, "big", "json", `module.exports = function (ctx, cb) { cb(null, 'x'.repeat(Number(ctx.query.n))) }`, nil)
	deploy(t, n, tok, "big", "stream", `module.exports = function (ctx, req, res) {
		res.writeHead(200, {'content-type': 'text/plain'});
		const chunk = 'y'.repeat(8192); let left = Number(ctx.query.n);
		const more = () => { while (left > 0) { left -= chunk.length; if (!res.write(chunk)) return res.once('drain', more) } res.end() };
		more();
	}`, nil)
	deploy(t, n, tok, "big", "who", whoami, nil)
	before := host(t, n, "big", "who")

	r := do(t, n, "GET", "/run/big/json?n=60000", "", nil)
	expect(t, r, 200)
	if len(r.Body) != 60002 {
		t.Errorf("60 kB response arrived with %d bytes", len(r.Body))
	}
	r = do(t, n, "GET", "/run/big/json?n=100000", "", nil)
	expect(t, r, http.StatusBadGateway)
	var e struct{ Code string }
	if err := r.JSON(&e); err != nil || e.Code != "response_too_large" {
		t.Errorf("oversized response: %s", r.Body)
	}

	resp, err := http.Get(n.URL + "/run/big/stream?n=40000")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(b) != 40960 {
		t.Errorf("40 kB stream: %d bytes, %v", len(b), err)
	}
	resp, err = http.Get(n.URL + "/run/big/stream?n=1000000")
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(b) > 64<<10 {
		t.Errorf("1 MB stream: read %d bytes with error %v; want it cut at 64 KiB", len(b), err)
	}
	if h := host(t, n, "big", "who"); h != before {
		t.Errorf("the container was replaced over a large response: %s -> %s", before, h)
	}
}

// Invariant: a tenant whose container dies on every request is slowed down:
// after three deaths its requests answer 503 tenant_backoff with Retry-After
// (no container taken meanwhile) while another tenant is served, and once the
// wait is over it is served again.
func TestCrashLoopBackoff(t *testing.T) {
	n := startNode(t)
	tok := createTenant(t, n, "crashy")
	deploy(t, n, tok, "crashy", "die", `module.exports = function (cb) { process.exit(3) }`, nil)
	deploy(t, n, tok, "crashy", "who", whoami, nil)
	other := createTenant(t, n, "steady")
	deploy(t, n, other, "steady", "who", whoami, nil)

	deaths := 0
	var backoff wharftest.Response
	deadline := time.Now().Add(60 * time.Second)
	for backoff.Status == 0 && time.Now().Before(deadline) {
		r := do(t, n, "GET", "/run/crashy/die", "", nil)
		switch r.Status {
		case http.StatusBadGateway:
			deaths++
		case http.StatusServiceUnavailable:
			var e struct{ Code string }
			_ = r.JSON(&e)
			if e.Code == "tenant_backoff" {
				backoff = r
				break
			}
			time.Sleep(50 * time.Millisecond) // no_container: the pool is refilling
		default:
			t.Fatalf("unexpected %d %s", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond) // let the death event arrive
	}
	if backoff.Status == 0 {
		t.Fatalf("no backoff after %d deaths", deaths)
	}
	if deaths < 3 || deaths > 4 {
		t.Errorf("backoff after %d deaths, want 3 (a 4th may race the last death's event)", deaths)
	}
	if backoff.Header.Get("Retry-After") == "" {
		t.Error("tenant_backoff without Retry-After")
	}
	// Requests during the backoff take no container from the pool. Counted
	// as the node's claims for the tenant, not as running containers: the
	// adaptive pool may grow after three quick claims, which is no drain.
	claims := func() int {
		return strings.Count(n.Stderr(), `msg="container assigned" node=`+n.NodeID+` component=handler tenant=crashy `)
	}
	before := claims()
	if before != deaths {
		t.Errorf("%d containers claimed for %d deaths", before, deaths)
	}
	for range 3 {
		if r := do(t, n, "GET", "/run/crashy/die", "", nil); r.Status != http.StatusServiceUnavailable {
			t.Errorf("request during the backoff: %d %s", r.Status, r.Body)
		}
	}
	if after := claims(); after != before {
		t.Errorf("%d containers claimed during the backoff: the pool is being drained", after-before)
	}
	host(t, n, "steady", "who")
	eventually(t, 30*time.Second, "the crashing tenant served again after its wait", func() bool {
		r, err := n.Do("GET", "/run/crashy/who", "", nil)
		return err == nil && r.Status == 200
	})
}

// Invariant: the node's firewall rules exist while it runs, survive a
// kill -9, are reconciled (not duplicated) by the restart, and are gone
// after SIGTERM; the egress switch decides how the forward chain ends.
func TestFirewallFollowsTheNode(t *testing.T) {
	t.Parallel()
	n := startNode(t, wharftestArgs("--egress=false", "--egress-deny", "10.0.0.0/8")...)
	names := netpolicy.NamesFor(n.NodeID)
	rules := func() string {
		out, _ := exec.Command("iptables", "-w", "-S").CombinedOutput()
		return string(out)
	}
	count := func(s, sub string) int { return strings.Count(s, sub) }
	check := func(when string) {
		t.Helper()
		all := rules()
		if c := count(all, "-A INPUT -i "+names.Bridge+" -j "+names.Input); c != 1 {
			t.Errorf("%s: %d INPUT hooks", when, c)
		}
		if c := count(all, "-A DOCKER-USER -i "+names.Bridge+" -j "+names.Forward); c != 1 {
			t.Errorf("%s: %d DOCKER-USER hooks", when, c)
		}
		fwd, _ := exec.Command("iptables", "-w", "-S", names.Forward).CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(fwd)), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, "-j REJECT") || strings.Contains(last, " -d ") || strings.Contains(last, " -o ") {
			t.Errorf("%s: without egress the forward chain ends with %q", when, last)
		}
		if !strings.Contains(string(fwd), "-d 10.0.0.0/8 -j REJECT") {
			t.Errorf("%s: --egress-deny not applied:\n%s", when, fwd)
		}
	}
	check("running")
	n.Kill()
	if !strings.Contains(rules(), names.Input) {
		t.Error("rules gone after kill -9: the containers Docker may still run would be unconfined")
	}
	if err := n.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("restarted")
	if err := n.Stop(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if all := rules(); strings.Contains(all, names.Bridge) || strings.Contains(all, names.Input) || strings.Contains(all, names.Forward) {
		t.Errorf("rules left after SIGTERM:\n%s", all)
	}
}
