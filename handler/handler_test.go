package handler

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/engine/enginetest"
	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/pool"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type fixture struct {
	eng  *enginetest.Fake
	pool *pool.Pool
	h    *Handler
}

func setup(t *testing.T, size int, createDelay time.Duration) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := enginetest.New()
	f.CreateDelay = createDelay
	p, err := pool.New(pool.Config{
		NodeID: "n1", Image: "img", ImageHash: "h", Network: "net",
		Root: filepath.Join(dir, "c"), ModulesDir: filepath.Join(dir, "m"), Size: size, MaxParallel: 4,
		Probe: func(context.Context, string) error { return nil },
	}, f, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	h := New(p, Config{ColdStartTimeout: 5 * time.Second, Probe: func(context.Context, string) error { return nil }}, quiet())
	t.Cleanup(func() {
		h.Close(context.Background())
		cancel()
		<-done
	})
	return &fixture{eng: f, pool: p, h: h}
}

func acquire(t *testing.T, h *Handler, tenant string) (*Assignment, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, cold, err := h.Acquire(ctx, tenant)
	if err != nil {
		t.Fatalf("acquire %s: %v", tenant, err)
	}
	return a, cold
}

// Invariant: two tenants get two containers; one tenant always gets the same one.
func TestTenantsGetOwnContainers(t *testing.T) {
	fx := setup(t, 2, 0)
	a1, cold := acquire(t, fx.h, "acme")
	if !cold {
		t.Fatal("first request must be cold")
	}
	b1, _ := acquire(t, fx.h, "globex")
	if a1.C.ID == b1.C.ID {
		t.Fatal("two tenants share a container")
	}
	for i := 0; i < 10; i++ {
		a, cold := acquire(t, fx.h, "acme")
		if cold || a.C.ID != a1.C.ID {
			t.Fatalf("request %d of acme: cold=%v container %s, want warm %s", i, cold, a.C.ID, a1.C.ID)
		}
	}
	owner, err := os.ReadFile(filepath.Join(a1.C.Dir, "owner"))
	if err != nil || string(owner) != "acme" {
		t.Fatalf("owner record = %q, %v", owner, err)
	}
}

// Invariant: Warm gives a tenant's own container, held like Acquire's, and
// nothing for a tenant without one (it never claims).
func TestWarm(t *testing.T) {
	fx := setup(t, 2, 0)
	if a := fx.h.Warm("acme"); a != nil {
		t.Fatal("Warm gave a container to a tenant that had none")
	}
	if fx.h.Stats().Assigned != 0 {
		t.Fatal("Warm claimed a container")
	}
	a1, _ := acquire(t, fx.h, "acme")
	fx.h.Release(a1)
	a := fx.h.Warm("acme")
	if a == nil || a.C.ID != a1.C.ID {
		t.Fatalf("Warm = %v, want acme's container %s", a, a1.C.ID)
	}
	if fx.h.Stats().Busy != 1 {
		t.Fatal("Warm's assignment is not held: eviction could take it mid-request")
	}
	fx.h.Release(a)
	if fx.h.Stats().Busy != 0 {
		t.Fatal("Release did not drop Warm's hold")
	}
}

// Invariant: concurrent first requests of one tenant share one cold start.
func TestConcurrentColdStartsShareOneClaim(t *testing.T) {
	fx := setup(t, 2, 0)
	for fx.pool.Ready() < 2 {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	ids := make(chan string, 30)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, _ := acquire(t, fx.h, "acme")
			ids <- a.C.ID
		}()
	}
	wg.Wait()
	close(ids)
	first := <-ids
	for id := range ids {
		if id != first {
			t.Fatal("concurrent first requests got different containers")
		}
	}
	if n := fx.pool.Stats().Takes; n != 1 {
		t.Fatalf("%d containers taken for one tenant", n)
	}
}

// Invariant: a waiter giving up does not cancel the detached claim; the claim
// finishes and serves the tenant's next request warm.
func TestWaiterTimeoutDoesNotCancelClaim(t *testing.T) {
	fx := setup(t, 0, 150*time.Millisecond) // empty pool: the claim must wait for a creation
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := fx.h.Acquire(ctx, "acme")
	e := errs.As(err)
	if e == nil || e.Status != http.StatusServiceUnavailable || e.RetryAfter == 0 {
		t.Fatalf("err = %v, want 503 with Retry-After", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for fx.h.Tenants() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, cold := acquire(t, fx.h, "acme"); cold {
		t.Fatal("the detached claim did not finish: next request was cold again")
	}
}

// Invariant: a failed container is removed, never reused, and the tenant's
// next request gets a fresh one.
func TestFailReplacesContainer(t *testing.T) {
	fx := setup(t, 2, 0)
	a, _ := acquire(t, fx.h, "acme")
	fx.h.Fail(a, "test")
	fx.h.Fail(a, "reported twice") // idempotent
	b, cold := acquire(t, fx.h, "acme")
	if !cold || b.C.ID == a.C.ID {
		t.Fatalf("after failure: cold=%v same=%v", cold, b.C.ID == a.C.ID)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		removed := true
		for _, c := range fx.eng.Live() {
			if c.Info.ID == a.C.ID {
				removed = false
			}
		}
		if _, err := os.Stat(a.C.Dir); removed && os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("failed container or its dir not removed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Never back in the pool: drain the pool and check none is the old one.
	for fx.pool.Ready() > 0 {
		c, _ := fx.pool.Take(context.Background())
		if c.ID == a.C.ID {
			t.Fatal("a tenant's container went back to the pool")
		}
	}
}

// Invariant: a container-died event drops the tenant's container.
func TestContainerGoneEvent(t *testing.T) {
	fx := setup(t, 1, 0)
	a, _ := acquire(t, fx.h, "acme")
	if fx.h.ContainerGone("unknown-id") {
		t.Fatal("unknown container reported as a tenant's")
	}
	if !fx.h.ContainerGone(a.C.ID) {
		t.Fatal("tenant container not recognised")
	}
	if !a.Gone() {
		t.Fatal("assignment not marked gone")
	}
	if b, cold := acquire(t, fx.h, "acme"); !cold || b.C.ID == a.C.ID {
		t.Fatal("next request did not cold start a fresh container")
	}
}

// Invariant: provisioning writes a version once, atomically, into its own
// directory with the runner's config; a new version gets a new directory.
func TestProvision(t *testing.T) {
	fx := setup(t, 1, 0)
	a, _ := acquire(t, fx.h, "acme")
	fn := &catalog.Function{Tenant: "acme", Name: "hello", Version: 1, Code: "module.exports = cb => cb(null, 1)",
		Secrets: map[string]string{"K": "V"}, TimeoutMS: 1000}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fx.h.Provision(a, fn); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	dir := filepath.Join(a.C.AppDir, "functions", "hello", "1")
	code, err := os.ReadFile(filepath.Join(dir, "function.js"))
	if err != nil || string(code) != fn.Code {
		t.Fatalf("code = %q, %v", code, err)
	}
	var cfg runnerConfig
	raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg.Secrets["K"] != "V" || cfg.TimeoutMS != 1000 || cfg.Tenant != "acme" {
		t.Fatalf("config = %+v, %v", cfg, err)
	}
	entries, _ := os.ReadDir(filepath.Join(a.C.AppDir, "functions", "hello"))
	if len(entries) != 1 {
		t.Fatalf("temporary directories left: %v", entries)
	}
	fn2 := *fn
	fn2.Version, fn2.Code = 2, "module.exports = cb => cb(null, 2)"
	if err := fx.h.Provision(a, &fn2); err != nil {
		t.Fatal(err)
	}
	if code, _ := os.ReadFile(filepath.Join(a.C.AppDir, "functions", "hello", "2", "function.js")); string(code) != fn2.Code {
		t.Fatalf("version 2 code = %q", code)
	}
}

// Invariant: after Close no container is claimed and all tenant containers are removed.
func TestClose(t *testing.T) {
	fx := setup(t, 2, 0)
	a, _ := acquire(t, fx.h, "acme")
	fx.h.Close(context.Background())
	if !a.Gone() {
		t.Fatal("tenant container survived Close")
	}
	_, _, err := fx.h.Acquire(context.Background(), "globex")
	if e := errs.As(err); e == nil || e.Status != http.StatusServiceUnavailable {
		t.Fatalf("acquire after close: %v", err)
	}
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed in chain", err)
	}
}

// fakeModules answers Link from a map, or with err.
type fakeModules struct {
	mu    sync.Mutex
	links map[string]string
	err   error
	calls int
}

func (m *fakeModules) Link(_ context.Context, deps map[string]string) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.err != nil {
		return nil, m.err
	}
	out := map[string]string{}
	for name := range deps {
		out[name] = m.links[name]
	}
	return out, nil
}

// Invariant: a version's node_modules is one symlink per dependency into the
// module store (scoped names in their scope directory), and a module that is
// not ready fails provisioning with its 503, leaving nothing written, so a
// later request provisions it in full.
func TestProvisionLinksModules(t *testing.T) {
	fx := setup(t, 1, 0)
	mods := &fakeModules{err: errs.Unavailable("module_not_ready", 2, nil, "Module ms@2.1.3 is still being built.")}
	fx.h.cfg.Modules = mods
	a, _ := acquire(t, fx.h, "acme")
	fn := &catalog.Function{Tenant: "acme", Name: "deps", Version: 3, Code: "x",
		Dependencies: map[string]string{"ms": "2.1.3", "@types/node": "20.1.0"}}
	err := fx.h.Provision(a, fn)
	if e := errs.As(err); e == nil || e.Code != "module_not_ready" {
		t.Fatalf("Provision = %v, want module_not_ready", err)
	}
	if _, err := os.Stat(filepath.Join(a.C.AppDir, "functions", "deps", "3")); err == nil {
		t.Fatal("version written although a module is not ready")
	}
	mods.mu.Lock()
	mods.err = nil
	mods.links = map[string]string{"ms": "/modules/ms/2.1.3/node_modules/ms",
		"@types/node": "/modules/@types+node/20.1.0/node_modules/@types/node"}
	mods.mu.Unlock()
	if err := fx.h.Provision(a, fn); err != nil {
		t.Fatal(err)
	}
	nm := filepath.Join(a.C.AppDir, "functions", "deps", "3", "node_modules")
	for name, want := range mods.links {
		got, err := os.Readlink(filepath.Join(nm, filepath.FromSlash(name)))
		if err != nil || got != want {
			t.Fatalf("link %s -> %q (%v), want %q", name, got, err, want)
		}
		// require('name@version') of the declared version: an alias to the same target.
		alias := name + "@" + fn.Dependencies[name]
		if got, err := os.Readlink(filepath.Join(nm, filepath.FromSlash(alias))); err != nil || got != want {
			t.Fatalf("alias %s -> %q (%v), want %q", alias, got, err, want)
		}
	}
	if entries, _ := os.ReadDir(nm); len(entries) != 3 { // ms, ms@2.1.3 and the @types scope
		t.Fatalf("node_modules holds %d entries, want 3", len(entries))
	}
	var cfg struct{ Dependencies map[string]string }
	if b, err := os.ReadFile(filepath.Join(nm, "..", "config.json")); err != nil || json.Unmarshal(b, &cfg) != nil ||
		!maps.Equal(cfg.Dependencies, fn.Dependencies) {
		t.Fatalf("config.json dependencies %v (%v), want %v", cfg.Dependencies, err, fn.Dependencies)
	}
	// Provisioned once: a later request does not ask for links again.
	calls := mods.calls
	if err := fx.h.Provision(a, fn); err != nil || mods.calls != calls {
		t.Fatalf("re-provision: %v, %d Link calls, want %d", err, mods.calls, calls)
	}
	// A node without a module cache refuses clearly.
	fx.h.cfg.Modules = nil
	fn2 := *fn
	fn2.Version = 4
	if e := errs.As(fx.h.Provision(a, &fn2)); e == nil || e.Status != http.StatusServiceUnavailable {
		t.Fatalf("no module cache: %v", e)
	}
}
