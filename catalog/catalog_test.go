package catalog

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfhq/wharf/store"
)

type fakeSource struct {
	mu     sync.Mutex
	fns    map[string]store.FunctionVersion
	reads  atomic.Int64
	gate   chan struct{} // when set, reads block until it is closed
	failed error
}

func (s *fakeSource) GetFunction(_ context.Context, tenant, name string) (store.FunctionVersion, error) {
	s.reads.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return store.FunctionVersion{}, s.failed
	}
	v, ok := s.fns[tenant+"/"+name]
	if !ok {
		return store.FunctionVersion{}, store.ErrNotFound
	}
	return v, nil
}

func (s *fakeSource) set(tenant, name string, version int) {
	s.mu.Lock()
	s.fns[tenant+"/"+name] = store.FunctionVersion{Tenant: tenant, Name: name, Version: version, Code: "x"}
	s.mu.Unlock()
}

func newCat() (*Catalog, *fakeSource) {
	src := &fakeSource{fns: map[string]store.FunctionVersion{}}
	return New(src, slog.New(slog.NewTextHandler(io.Discard, nil))), src
}

// Invariant: once loaded, Get never reads the source again until invalidated.
func TestHitsDoNotReadSource(t *testing.T) {
	c, src := newCat()
	src.set("acme", "f", 1)
	for i := 0; i < 100; i++ {
		fn, err := c.Get(context.Background(), "acme", "f")
		if err != nil || fn.Version != 1 {
			t.Fatalf("get: %v %v", fn, err)
		}
	}
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("source read %d times, want 1", n)
	}
	if fn, _ := c.Get(context.Background(), "acme", "f"); fn.Secrets == nil {
		t.Fatal("secrets must be an object, never nil")
	}
}

// Invariant: after Invalidate the next Get sees the new version.
func TestInvalidate(t *testing.T) {
	c, src := newCat()
	src.set("acme", "f", 1)
	_, _ = c.Get(context.Background(), "acme", "f")
	src.set("acme", "f", 2)
	c.Invalidate("acme", "f")
	fn, err := c.Get(context.Background(), "acme", "f")
	if err != nil || fn.Version != 2 {
		t.Fatalf("after invalidate: %v %v", fn, err)
	}
	src.set("acme", "f", 3)
	c.InvalidateTenant("acme")
	if fn, _ := c.Get(context.Background(), "acme", "f"); fn.Version != 3 {
		t.Fatalf("after tenant invalidate: version %d", fn.Version)
	}
}

// Invariant: a miss is remembered (no store read per 404) until the function is created.
func TestNegativeCaching(t *testing.T) {
	c, src := newCat()
	for i := 0; i < 10; i++ {
		if _, err := c.Get(context.Background(), "acme", "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want not found", err)
		}
	}
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("source read %d times for a repeated miss", n)
	}
	src.set("acme", "nope", 1)
	c.Invalidate("acme", "nope")
	if fn, err := c.Get(context.Background(), "acme", "nope"); err != nil || fn.Version != 1 {
		t.Fatalf("created function not seen: %v %v", fn, err)
	}
}

// Invariant: a store error is returned and not cached.
func TestErrorsAreNotCached(t *testing.T) {
	c, src := newCat()
	src.failed = errors.New("store down")
	if _, err := c.Get(context.Background(), "acme", "f"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want the store error", err)
	}
	src.failed = nil
	src.set("acme", "f", 1)
	if _, err := c.Get(context.Background(), "acme", "f"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// Invariant: an invalidation that lands while a load is reading prevents the
// possibly stale result from being cached.
func TestInvalidateDuringLoad(t *testing.T) {
	c, src := newCat()
	src.set("acme", "f", 1)
	src.gate = make(chan struct{})
	done := make(chan struct{})
	go func() { _, _ = c.Get(context.Background(), "acme", "f"); close(done) }()
	for src.reads.Load() == 0 {
	}
	c.Invalidate("acme", "f") // the update happened while the read was in flight
	close(src.gate)
	<-done
	src.gate = nil
	src.set("acme", "f", 2)
	if fn, _ := c.Get(context.Background(), "acme", "f"); fn.Version != 2 {
		t.Fatalf("stale version %d cached across an invalidation", fn.Version)
	}
}

// Invariant: concurrent misses of one key share one store read.
func TestConcurrentMissesShareOneRead(t *testing.T) {
	c, src := newCat()
	src.set("acme", "f", 1)
	src.gate = make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Get(context.Background(), "acme", "f"); err != nil {
				t.Error(err)
			}
		}()
	}
	for src.reads.Load() == 0 {
	}
	close(src.gate)
	wg.Wait()
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("%d reads for 20 concurrent misses", n)
	}
}

// Invariant: a prefetch after a change fills the cache with the new version.
func TestPrefetch(t *testing.T) {
	c, src := newCat()
	src.set("acme", "f", 1)
	_, _ = c.Get(context.Background(), "acme", "f")
	src.set("acme", "f", 2)
	c.Invalidate("acme", "f")
	c.Prefetch("acme", "f")
	for i := 0; src.reads.Load() < 2; i++ {
		if i > 5000 {
			t.Fatal("prefetch never read the source")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; ; i++ {
		c.mu.RLock()
		e, ok := c.entries[key("acme", "f")]
		c.mu.RUnlock()
		if ok && e.fn.Version == 2 {
			break
		}
		if i > 5000 {
			t.Fatal("prefetched version not cached")
		}
		time.Sleep(time.Millisecond)
	}
	reads := src.reads.Load()
	if fn, _ := c.Get(context.Background(), "acme", "f"); fn.Version != 2 || src.reads.Load() != reads {
		t.Fatal("Get after prefetch read the source again")
	}
}

// Invariant: Refresh reloads only what the node had cached; InvalidateAll
// forgets everything; old entries are revalidated.
func TestRefreshInvalidateAllRevalidate(t *testing.T) {
	c, src := newCat()
	src.set("acme", "f", 1)
	src.set("acme", "g", 1)
	_, _ = c.Get(context.Background(), "acme", "f")
	reads := src.reads.Load()
	c.Refresh("acme", "g") // never cached here: no load
	time.Sleep(20 * time.Millisecond)
	if src.reads.Load() != reads {
		t.Fatal("Refresh loaded a function this node never cached")
	}
	src.set("acme", "f", 2)
	c.Refresh("acme", "f")
	waitFor(t, func() bool { return cachedVersion(c, "acme", "f") == 2 })

	c.InvalidateAll()
	if cachedVersion(c, "acme", "f") != 0 {
		t.Fatal("InvalidateAll kept an entry")
	}
	_, _ = c.Get(context.Background(), "acme", "f")
	src.set("acme", "f", 3)
	if n := c.RevalidateOlderThan(time.Hour); n != 0 {
		t.Fatalf("revalidated %d fresh entries", n)
	}
	if n := c.RevalidateOlderThan(0); n != 1 {
		t.Fatalf("revalidated %d entries, want 1", n)
	}
	waitFor(t, func() bool { return cachedVersion(c, "acme", "f") == 3 })
}

func cachedVersion(c *Catalog, tenant, name string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.entries[key(tenant, name)]; ok && e.fn != nil {
		return e.fn.Version
	}
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 5000 {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}
