package handler

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfhq/wharf/errs"
)

func setupLimits(t *testing.T, size int, lim Limits) *fixture {
	fx := setup(t, size, 0)
	fx.h.cfg.Limits = lim
	return fx
}

func removed(fx *fixture, id string) bool {
	for _, c := range fx.eng.Live() {
		if c.Info.ID == id {
			return false
		}
	}
	return true
}

func waitRemoved(t *testing.T, fx *fixture, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !removed(fx, id) {
		if time.Now().After(deadline) {
			t.Fatalf("container %s not removed", id)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Invariant: an idle tenant loses its container; a held one never does.
func TestIdleEviction(t *testing.T) {
	fx := setupLimits(t, 2, Limits{IdleTimeout: time.Minute})
	idle, _ := acquire(t, fx.h, "idle")
	fx.h.Release(idle)
	busy, _ := acquire(t, fx.h, "busy") // held: a request in flight
	if n := fx.h.Reap(time.Now().Add(2 * time.Minute)); n != 1 {
		t.Fatalf("reaped %d, want 1", n)
	}
	if !idle.Gone() || busy.Gone() {
		t.Fatalf("idle gone=%v busy gone=%v", idle.Gone(), busy.Gone())
	}
	waitRemoved(t, fx, idle.C.ID)
	if a, cold := acquire(t, fx.h, "idle"); !cold || a.C.ID == idle.C.ID {
		t.Fatal("evicted tenant did not get a fresh container")
	}
	if st := fx.h.Stats(); st.Evictions[ReasonIdle] != 1 {
		t.Fatalf("idle evictions %d", st.Evictions[ReasonIdle])
	}
}

// Invariant: a container past its lifetime takes no new request, keeps
// serving the ones it has, and is removed when the last one ends.
func TestLifetimeRetiresAfterLastRequest(t *testing.T) {
	fx := setupLimits(t, 2, Limits{MaxLifetime: time.Hour})
	old, _ := acquire(t, fx.h, "acme") // in flight throughout
	fx.h.Reap(time.Now().Add(2 * time.Hour))
	if !old.Gone() {
		t.Fatal("retired container still mapped")
	}
	fresh, cold := acquire(t, fx.h, "acme")
	if !cold || fresh.C.ID == old.C.ID {
		t.Fatal("request after retirement reused the old container")
	}
	time.Sleep(20 * time.Millisecond)
	if removed(fx, old.C.ID) {
		t.Fatal("container removed while a request was still using it")
	}
	fx.h.Release(old)
	waitRemoved(t, fx, old.C.ID)
}

// Invariant: at capacity the least recently used idle container makes room;
// when every container is busy the claim answers 503 node_at_capacity.
func TestCapacityEviction(t *testing.T) {
	fx := setupLimits(t, 3, Limits{MaxContainers: 2})
	a, _ := acquire(t, fx.h, "a")
	fx.h.Release(a)
	time.Sleep(time.Millisecond)
	b, _ := acquire(t, fx.h, "b")
	fx.h.Release(b)
	c, _ := acquire(t, fx.h, "c")
	if !a.Gone() || b.Gone() {
		t.Fatalf("LRU not evicted: a gone=%v b gone=%v", a.Gone(), b.Gone())
	}
	waitRemoved(t, fx, a.C.ID)
	if fx.h.Tenants() != 2 {
		t.Fatalf("%d tenants, want 2", fx.h.Tenants())
	}
	// b idle, c held: d evicts b. Then c and d are held: e cannot get one.
	d, _ := acquire(t, fx.h, "d")
	if !b.Gone() {
		t.Fatal("b not evicted")
	}
	_, _, err := fx.h.Acquire(context.Background(), "e")
	e := errs.As(err)
	if e == nil || e.Status != http.StatusServiceUnavailable || e.Code != "node_at_capacity" {
		t.Fatalf("err = %v, want 503 node_at_capacity", err)
	}
	fx.h.Release(c)
	fx.h.Release(d)
	if _, _, err := fx.h.Acquire(context.Background(), "e"); err != nil {
		t.Fatalf("after releases: %v", err)
	}
}

// Invariant: eviction and a request never both own a container. Many
// tenants' requests race the reaper (zero idle timeout) and capacity
// eviction; no request may ever hold an assignment whose removal started.
func TestEvictionNeverTakesAHeldContainer(t *testing.T) {
	fx := setupLimits(t, 4, Limits{MaxContainers: 3, IdleTimeout: time.Nanosecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			fx.h.Reap(time.Now())
		}
	}()
	var bad, served atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
				a, _, err := fx.h.Acquire(rctx, fmt.Sprintf("t%d", (w+i)%5))
				rcancel()
				if err != nil {
					continue // capacity 503s are fine
				}
				fx.h.mu.Lock()
				if a.discarded {
					bad.Add(1)
				}
				fx.h.mu.Unlock()
				if removed(fx, a.C.ID) {
					bad.Add(1)
				}
				served.Add(1)
				fx.h.Release(a)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d requests held a container that was being removed", bad.Load())
	}
	if served.Load() == 0 {
		t.Fatal("no request was served")
	}
}

func TestReapInterval(t *testing.T) {
	cases := []struct {
		lim  Limits
		want time.Duration
	}{
		{Limits{}, 0},
		{Limits{IdleTimeout: 15 * time.Minute, MaxLifetime: 24 * time.Hour}, 30 * time.Second},
		{Limits{IdleTimeout: 2 * time.Second}, 200 * time.Millisecond},
		{Limits{IdleTimeout: 10 * time.Millisecond}, 100 * time.Millisecond},
	}
	for _, c := range cases {
		if got := reapInterval(c.lim); got != c.want {
			t.Fatalf("reapInterval(%+v) = %v, want %v", c.lim, got, c.want)
		}
	}
}

// Invariant: concurrent first requests of more tenants than the capacity do
// not all get containers: claims under way count against the limit.
func TestCapacityCountsClaimsUnderWay(t *testing.T) {
	fx := setup(t, 0, 100*time.Millisecond) // every claim waits for a creation
	fx.h.cfg.Limits = Limits{MaxContainers: 2}
	var wg sync.WaitGroup
	var got, refused atomic.Int64
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, _, err := fx.h.Acquire(ctx, fmt.Sprintf("t%d", i)); err == nil {
				got.Add(1)
			} else if e := errs.As(err); e != nil && e.Code == "node_at_capacity" {
				refused.Add(1)
			} else {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got.Load() != 2 || refused.Load() != 3 {
		t.Fatalf("%d got containers, %d refused; want 2 and 3", got.Load(), refused.Load())
	}
	if fx.h.Tenants() != 2 {
		t.Fatalf("%d tenants hold containers", fx.h.Tenants())
	}
}
