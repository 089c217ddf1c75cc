package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/engine/enginetest"
)

func testConfig(t *testing.T, size int) Config {
	dir := t.TempDir()
	return Config{
		NodeID: "n1", Image: "wharf-runtime:test", ImageHash: "h1", Network: "wharf-n1",
		Root: filepath.Join(dir, "containers"), ModulesDir: filepath.Join(dir, "modules"),
		Size: size, MaxParallel: 2, ReadyTimeout: time.Second,
		Probe: func(context.Context, string) error { return nil },
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startPool(t *testing.T, cfg Config, eng engine.Engine) *Pool {
	t.Helper()
	p, err := New(cfg, eng, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Invariant: the pool fills to its size and refills after every take.
func TestPoolFillsAndRefills(t *testing.T) {
	f := enginetest.New()
	p := startPool(t, testConfig(t, 3), f)
	eventually(t, "pool full", func() bool { return p.Ready() == 3 })
	c, err := p.Take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.IP == "" || c.ID == "" {
		t.Fatalf("taken container incomplete: %+v", c)
	}
	if _, err := os.Stat(c.AppDir); err != nil {
		t.Fatalf("app dir missing: %v", err)
	}
	eventually(t, "refill", func() bool { return p.Ready() == 3 })
	if got := len(f.Live()); got != 4 {
		t.Fatalf("live containers = %d, want 4 (3 ready + 1 taken)", got)
	}
}

// Invariant: concurrent takes never hand out one container twice.
func TestTakeIsExclusive(t *testing.T) {
	f := enginetest.New()
	p := startPool(t, testConfig(t, 4), f)
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := p.Take(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[c.ID]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(seen) != 40 {
		t.Fatalf("40 takes got %d distinct containers", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("container %s handed out %d times", id, n)
		}
	}
}

// Invariant: Take on an empty pool that cannot fill returns ErrEmpty at the deadline.
func TestTakeTimesOutWithErrEmpty(t *testing.T) {
	f := enginetest.New()
	f.FailCreate = errors.New("engine down")
	p := startPool(t, testConfig(t, 2), f)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := p.Take(ctx)
	if !errors.Is(err, ErrEmpty) {
		t.Fatalf("err = %v, want ErrEmpty", err)
	}
	// Backoff: a broken engine is not hammered in a hot loop.
	if n := f.Count("CreateContainer"); n > 6 {
		t.Fatalf("%d creation attempts in 150ms: no backoff", n)
	}
	if p.Stats().ConsecutiveFailures == 0 {
		t.Fatal("failures not counted")
	}
}

// Invariant: a failed creation leaves no container and no directory behind.
func TestFailedCreationCleansUp(t *testing.T) {
	f := enginetest.New()
	cfg := testConfig(t, 1)
	cfg.Probe = func(context.Context, string) error { return errors.New("runner not answering") }
	cfg.ReadyTimeout = 30 * time.Millisecond
	p, err := New(cfg, f, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	eventually(t, "two failed creations", func() bool { return p.Stats().Failures >= 2 })
	cancel()
	<-done // Run returns only after creations under way finished
	if n := f.Count("CreateContainer"); n < 2 {
		t.Fatalf("only %d creations attempted", n)
	}
	if live := f.Live(); len(live) != 0 {
		t.Fatalf("%d containers left behind", len(live))
	}
	if entries, _ := os.ReadDir(cfg.Root); len(entries) != 0 {
		t.Fatalf("container dirs left behind: %v", entries)
	}
}

// Invariant: a pooled container that dies is dropped, removed and replaced.
func TestForgetReplacesDeadContainer(t *testing.T) {
	f := enginetest.New()
	p := startPool(t, testConfig(t, 2), f)
	eventually(t, "pool full", func() bool { return p.Ready() == 2 })
	victim := f.Live()[0].Info.ID
	if !p.Forget(context.Background(), victim) {
		t.Fatal("Forget did not find a pooled container")
	}
	if p.Forget(context.Background(), "unknown") {
		t.Fatal("Forget claimed an unknown container")
	}
	eventually(t, "replacement", func() bool { return p.Ready() == 2 })
	for _, c := range f.Live() {
		if c.Info.ID == victim {
			t.Fatal("dead container not removed")
		}
	}
}

// Invariant: reconcile adopts clean pooled containers of the current image
// and removes claimed ones, other images' and stopped ones, and stray dirs.
func TestReconcile(t *testing.T) {
	f := enginetest.New()
	cfg := testConfig(t, 0)
	p, err := New(cfg, f, quiet())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name, hash string, owned, running bool) string {
		s := Spec(p.Config(), name) // as the pool creates them
		s.Labels[engine.LabelImage] = hash
		id, _ := f.CreateContainer(context.Background(), s)
		if running {
			_ = f.StartContainer(context.Background(), id)
		}
		dir := containerDir(cfg.Root, name)
		_ = os.MkdirAll(hostAppDir(cfg.Root, name), 0o755)
		if owned {
			_ = os.WriteFile(filepath.Join(dir, ownerFile), []byte("acme"), 0o600)
		}
		return id
	}
	clean := mk("wharf-n1-clean", "h1", false, true)
	mk("wharf-n1-owned", "h1", true, true)
	mk("wharf-n1-oldimg", "h0", false, true)
	mk("wharf-n1-stopped", "h1", false, false)
	other := Spec(cfg, "wharf-n2-x")
	other.Labels[engine.LabelNode] = "n2"
	otherID, _ := f.CreateContainer(context.Background(), other)
	_ = os.MkdirAll(filepath.Join(cfg.Root, "stray"), 0o755)

	adopted, removed, err := p.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if adopted != 1 || removed != 3 {
		t.Fatalf("adopted %d removed %d, want 1 and 3", adopted, removed)
	}
	c, err := p.Take(context.Background())
	if err != nil || c.ID != clean {
		t.Fatalf("took %v, %v; want the clean container", c, err)
	}
	live := map[string]bool{}
	for _, c := range f.Live() {
		live[c.Info.ID] = true
	}
	if !live[otherID] {
		t.Fatal("reconcile removed another node's container")
	}
	if len(live) != 2 {
		t.Fatalf("%d live containers, want 2 (adopted + other node's)", len(live))
	}
	entries, _ := os.ReadDir(cfg.Root)
	if len(entries) != 1 || entries[0].Name() != "wharf-n1-clean" {
		t.Fatalf("container dirs after reconcile: %v", entries)
	}
}

func TestAdoptable(t *testing.T) {
	base := engine.ContainerInfo{Running: true, IP: "10.0.0.2",
		Labels: map[string]string{engine.LabelRole: RolePool, engine.LabelImage: "h"}}
	with := func(mod func(*engine.ContainerInfo)) engine.ContainerInfo {
		i := base
		i.Labels = map[string]string{engine.LabelRole: RolePool, engine.LabelImage: "h"}
		mod(&i)
		return i
	}
	cases := []struct {
		name         string
		info         engine.ContainerInfo
		owned, clean bool
		want         bool
	}{
		{"clean pooled", base, false, true, true},
		{"claimed by a tenant", base, true, true, false},
		{"has files", base, false, false, false},
		{"stopped", with(func(i *engine.ContainerInfo) { i.Running = false }), false, true, false},
		{"no address", with(func(i *engine.ContainerInfo) { i.IP = "" }), false, true, false},
		{"old image", with(func(i *engine.ContainerInfo) { i.Labels[engine.LabelImage] = "old" }), false, true, false},
		{"builder container", with(func(i *engine.ContainerInfo) { i.Labels[engine.LabelRole] = "build" }), false, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := adoptable(c.info, "h", c.owned, c.clean); got != c.want {
				t.Fatalf("adoptable = %v, want %v", got, c.want)
			}
		})
	}
}

// Invariant: every pooled container is hardened.
func TestSpecIsHardened(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.Limits = DefaultLimits
	s := Spec(cfg, "wharf-n1-x")
	if !s.ReadOnlyRoot || len(s.CapDrop) != 1 || s.CapDrop[0] != "ALL" || s.User != RunnerUser {
		t.Fatalf("not hardened: %+v", s)
	}
	if s.SecurityOpt[0] != "no-new-privileges" {
		t.Fatalf("no-new-privileges missing: %v", s.SecurityOpt)
	}
	if s.MemoryBytes == 0 || s.NanoCPUs == 0 || s.PidsLimit == 0 || s.Tmpfs["/tmp"] == "" {
		t.Fatalf("limits missing: %+v", s)
	}
	for _, m := range s.Mounts {
		if !m.ReadOnly {
			t.Fatalf("mount %s is writable", m.Target)
		}
	}
	if _, ok := s.Labels[engine.LabelTenant]; ok {
		t.Fatal("pooled container must not carry a tenant label")
	}
	if lc := s.LogConfig; lc.Driver != "json-file" || lc.Options["max-size"] != "1048576" || lc.Options["max-file"] != "2" {
		t.Fatalf("log driver not bounded: %+v", lc)
	}
	if !slices.Contains(s.Env, "WHARF_LOG_RATE=100") {
		t.Fatalf("runner log rate not set: %v", s.Env)
	}
}

// Invariant: the output limits come from the configuration, zero fields
// taking the defaults, so output can never go unbounded.
func TestSpecLogLimits(t *testing.T) {
	cases := []struct {
		name                  string
		bytes                 int64
		files, rate           int
		size, count, wantRate string
	}{
		{"defaults", 0, 0, 0, "1048576", "2", "100"},
		{"configured", 5 << 20, 3, 250, "5242880", "3", "250"},
		{"negative falls back", -1, -4, -9, "1048576", "2", "100"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, 1)
			cfg.Limits = DefaultLimits
			cfg.Limits.LogBytes, cfg.Limits.LogFiles, cfg.Limits.LogRate = c.bytes, c.files, c.rate
			s := Spec(cfg, "wharf-n1-x")
			lc := s.LogConfig
			if lc.Driver != "json-file" || lc.Options["max-size"] != c.size || lc.Options["max-file"] != c.count {
				t.Fatalf("got %+v, want json-file max-size %s max-file %s", lc, c.size, c.count)
			}
			if !slices.Contains(s.Env, "WHARF_LOG_RATE="+c.wantRate) {
				t.Fatalf("env %v, want WHARF_LOG_RATE=%s", s.Env, c.wantRate)
			}
		})
	}
}

// Invariant: a creation that fails on our side but completed in the engine
// (a cancelled request) leaves no container behind.
func TestCreationFailedAfterEngineCreatedIt(t *testing.T) {
	f := enginetest.New()
	f.CreateThenFail = errors.New("context canceled")
	cfg := testConfig(t, 1)
	p, err := New(cfg, f, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	eventually(t, "a failed creation", func() bool { return p.Stats().Failures >= 1 })
	cancel()
	<-done
	if live := f.Live(); len(live) != 0 {
		t.Fatalf("%d containers left behind", len(live))
	}
}

// Invariant: a burst of claims grows the pool up to its maximum, and once the
// burst is older than the TTL the pool shrinks back to its minimum.
func TestAdaptiveGrowAndShrink(t *testing.T) {
	f := enginetest.New()
	cfg := testConfig(t, 2)
	cfg.MaxSize, cfg.TTL, cfg.MaxParallel = 6, 300*time.Millisecond, 4
	p := startPool(t, cfg, f)
	eventually(t, "min size", func() bool { return p.Ready() == 2 })
	for i := 0; i < 3; i++ {
		if _, err := p.Take(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if tg := p.Stats().Target; tg != 5 {
		t.Fatalf("target after 3 claims = %d, want 5", tg)
	}
	eventually(t, "growth to 5", func() bool { return p.Ready() == 5 })
	eventually(t, "shrink back to 2 after the TTL", func() bool { return p.Ready() == 2 && p.Stats().Shrunk == 3 })
	eventually(t, "surplus removed", func() bool { return len(f.Live()) == 2+3 /* ready + claimed */ })
}

// Invariant: cold starts queue for a container only up to a bound; beyond it
// they fail at once instead of piling up.
func TestWaitingIsBounded(t *testing.T) {
	f := enginetest.New()
	f.FailCreate = errors.New("engine down")
	cfg := testConfig(t, 0)
	cfg.MaxWaiting = 2
	p := startPool(t, cfg, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 2; i++ {
		go func() { _, _ = p.Take(ctx) }()
	}
	eventually(t, "two waiters", func() bool { return p.Stats().Waiting == 2 })
	start := time.Now()
	_, err := p.Take(context.Background()) // would wait forever if unbounded
	if !errors.Is(err, ErrEmpty) || time.Since(start) > time.Second {
		t.Fatalf("third waiter: %v after %v", err, time.Since(start))
	}
}

// Invariant: a take from a well-stocked pool is replaced only after the
// refill hold (the cold start keeps the CPU), while a take that leaves the
// pool below half is replaced at once.
func TestRefillHoldDelaysReplacement(t *testing.T) {
	f := enginetest.New()
	cfg := testConfig(t, 4)
	cfg.RefillHold = 400 * time.Millisecond
	p := startPool(t, cfg, f)
	eventually(t, "pool full", func() bool { return p.Ready() == 4 })
	created := p.Stats().Created
	taken := time.Now()
	if _, err := p.Take(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if st := p.Stats(); st.Created != created || st.Creating != 0 {
		t.Fatalf("replacement started %v after the take, within the hold: %+v", time.Since(taken), st)
	}
	eventually(t, "refill after the hold", func() bool { return p.Ready() == 4 })
	if d := time.Since(taken); d < cfg.RefillHold {
		t.Fatalf("refilled %v after the take, before the hold of %v", d, cfg.RefillHold)
	}

	// Three takes in a row leave 1 of 4: below half, replaced without waiting.
	created = p.Stats().Created
	taken = time.Now()
	for range 3 {
		if _, err := p.Take(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "refill below half", func() bool { st := p.Stats(); return st.Creating > 0 || st.Created > created })
	if d := time.Since(taken); d >= cfg.RefillHold/2 {
		t.Fatalf("a pool below half started its refill %v after the takes, not at once", d)
	}
}
