package integration

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfhq/wharf/integration/wharftest"
)

// metric reads one sample from /metrics (0 when absent).
func metric(t *testing.T, n *wharftest.Node, series string) float64 {
	t.Helper()
	return metricSum(t, n, series)
}

// metricSum adds up series read from one scrape: figures that must be
// consistent with each other cannot come from two.
func metricSum(t *testing.T, n *wharftest.Node, series ...string) float64 {
	t.Helper()
	r := do(t, n, "GET", "/metrics", "", nil)
	expect(t, r, 200)
	sum := 0.0
	for _, s := range series {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(s) + ` ([0-9.e+]+)$`)
		if m := re.FindSubmatch(r.Body); m != nil {
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			sum += v
		}
	}
	return sum
}

// Invariant: a tenant idle past --idle-timeout loses its container (removed,
// never reused); its next request cold starts a fresh one; /metrics counts it.
func TestIdleEvictionAndMetrics(t *testing.T) {
	t.Parallel()
	n := startNode(t, wharftestArgs("--idle-timeout", "1s")...)
	tok := createTenant(t, n, "idler")
	deploy(t, n, tok, "idler", "who", whoami, nil)
	first := host(t, n, "idler", "who")
	if v := metric(t, n, `wharf_requests_total{code="200",path="cold"}`); v != 1 {
		t.Fatalf("cold requests metric = %v, want 1", v)
	}
	eventually(t, 10*time.Second, "the idle container's removal", func() bool {
		return exec.Command("docker", "inspect", first).Run() != nil
	})
	if v := metric(t, n, `wharf_evictions_total{reason="idle"}`); v != 1 {
		t.Fatalf("idle evictions metric = %v, want 1", v)
	}
	if next := host(t, n, "idler", "who"); next == first {
		t.Fatal("an evicted container was reused")
	}
	for _, series := range []string{`wharf_pool_target`, `wharf_cold_start_phase_seconds_count{phase="claim"}`,
		`wharf_request_duration_seconds_count{path="cold"}`, `wharf_store_operation_seconds_count{op="get_function",outcome="ok"}`} {
		if metric(t, n, series) <= 0 {
			t.Fatalf("metric %s missing or zero", series)
		}
	}
}

// Invariant: at --max-containers the least recently used idle tenant is
// evicted to make room; under load from more tenants than the limit every
// request is answered (200, or 503 + Retry-After when all are busy), and the
// node never holds more tenant containers than the limit.
func TestCapacityEvictionUnderLoad(t *testing.T) {
	n := startNode(t, wharftestArgs("--max-containers", "2", "--pool-size", "2", "--pool-max", "2")...)
	tenants := []string{"cap-a", "cap-b", "cap-c"}
	for _, tn := range tenants {
		tok := createTenant(t, n, tn)
		deploy(t, n, tok, tn, "who", whoami, nil)
	}
	// Load starts once the pool is full, so the window measures eviction,
	// not the node's first container creations.
	eventually(t, 60*time.Second, "a full pool", func() bool {
		var rz struct {
			Checks map[string]struct{ Ready, Size *int }
		}
		r, err := n.Do("GET", "/readyz", "", nil)
		if err != nil || r.JSON(&rz) != nil {
			return false
		}
		p := rz.Checks["pool"]
		return p.Ready != nil && *p.Ready >= *p.Size
	})
	var ok, busy, bad atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(6 * time.Second)
	for _, tn := range tenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				r, err := n.Do("GET", "/run/"+tn+"/who", "", nil)
				switch {
				case err == nil && r.Status == 200:
					ok.Add(1)
				case err == nil && r.Status == 503 && r.Header.Get("Retry-After") != "":
					busy.Add(1)
					time.Sleep(50 * time.Millisecond)
				default:
					bad.Add(1)
					t.Logf("unexpected answer: %v %d %s", err, r.Status, r.Body)
				}
			}
		}()
	}
	maxHeld, maxEngine := 0, 0
	for time.Now().Before(stop) {
		held := int(metricSum(t, n, `wharf_containers{state="busy"}`, `wharf_containers{state="idle"}`))
		maxHeld = max(maxHeld, held)
		maxEngine = max(maxEngine, len(nodeContainers(t, n.NodeID)))
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d requests got neither 200 nor 503+Retry-After", bad.Load())
	}
	if ok.Load() < 10 {
		t.Fatalf("only %d requests served (%d busy)", ok.Load(), busy.Load())
	}
	if ev := metric(t, n, `wharf_evictions_total{reason="capacity"}`); ev < 1 {
		t.Fatal("no capacity eviction happened with 3 tenants and a limit of 2")
	}
	if maxHeld > 2 {
		t.Fatalf("tenants held %d containers at once, the limit is 2", maxHeld)
	}
	// On the engine: 2 tenant containers, a pool of 2, the creations under way
	// (--pool-parallel, 4) and removals not yet finished; more is a leak.
	if maxEngine > 2+2+4+2 {
		t.Fatalf("node held %d containers on the engine", maxEngine)
	}
	t.Logf("served %d, 503 %d, tenant containers at most %d, engine containers at most %d", ok.Load(), busy.Load(), maxHeld, maxEngine)
}

// Invariant: SIGTERM lets in-flight requests finish, refuses new work, and
// still removes every container of the node before exiting 0.
func TestDrainFinishesInFlight(t *testing.T) {
	n := startNode(t)
	tok := createTenant(t, n, "drain")
	deploy(t, n, tok, "drain", "slow", `module.exports = cb => setTimeout(() => cb(null, {done: true}), 1500)`, nil)
	deploy(t, n, tok, "drain", "who", whoami, nil)
	host(t, n, "drain", "who") // warm
	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		r, err := n.Do("GET", "/run/drain/slow", "", nil)
		res <- result{r.Status, string(r.Body), err}
	}()
	time.Sleep(300 * time.Millisecond)
	stopped := make(chan error, 1)
	go func() { stopped <- n.Stop(60 * time.Second) }()
	r := <-res
	if r.err != nil || r.status != 200 || r.body != `{"done":true}` {
		t.Fatalf("in-flight request during drain: %v %d %s", r.err, r.status, r.body)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("exit after drain: %v", err)
	}
	if _, err := n.Do("GET", "/healthz", "", nil); err == nil {
		t.Fatal("node still accepting after drain")
	}
	if left := nodeContainers(t, n.NodeID); len(left) != 0 {
		t.Fatalf("%d containers left after drain", len(left))
	}
}

// Invariant: while the store is down, warm tenants keep being served from the
// node's caches and management calls answer 503 quickly; when the store comes
// back everything recovers by itself.
func TestStoreOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := wharftest.RunRestartableStore(ctx)
	wharftest.CleanupStore(t, st)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, wharftestArgs("--mongo-uri", st.URI)...)
	tok := createTenant(t, n, "outage")
	deploy(t, n, tok, "outage", "who", whoami, nil)
	first := host(t, n, "outage", "who")

	st.Stop()
	for i := 0; i < 20; i++ {
		if h := host(t, n, "outage", "who"); h != first {
			t.Fatalf("warm tenant moved containers during the outage")
		}
	}
	start := time.Now()
	r := do(t, n, "GET", "/api/v1/tenants/outage/functions", tok, nil)
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("management call during outage: %d %s", r.Status, r.Body)
	}
	if el := time.Since(start); el > 6*time.Second {
		t.Fatalf("management 503 took %v", el)
	}
	if rz := do(t, n, "GET", "/readyz", "", nil); rz.Status != http.StatusServiceUnavailable {
		t.Fatalf("readyz during outage: %d", rz.Status)
	}

	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "management to recover", func() bool {
		r, err := n.Do("GET", "/api/v1/tenants/outage/functions", tok, nil)
		return err == nil && r.Status == 200
	})
	tok2 := createTenant(t, n, "after-outage")
	deploy(t, n, tok2, "after-outage", "who", whoami, nil)
	host(t, n, "after-outage", "who")
	expect(t, do(t, n, "GET", "/readyz", "", nil), 200)
	_ = fmt.Sprint()
}
