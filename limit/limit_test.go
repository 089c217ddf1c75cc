package limit

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/errs"
)

func TestDecide(t *testing.T) {
	tests := []struct {
		inflight, queued, max, maxQueue int
		want                            Decision
	}{
		{0, 0, 1, 0, Admit},
		{3, 0, 4, 4, Admit},
		{4, 0, 4, 4, Queue},
		{4, 3, 4, 4, Queue},
		{4, 4, 4, 4, Reject},
		{1, 0, 1, 0, Reject}, // no queue: straight to 429
		{9, 0, 4, 4, Queue},  // over the limit (a lowered limit) still queues
	}
	for _, tt := range tests {
		if got := Decide(tt.inflight, tt.queued, tt.max, tt.maxQueue); got != tt.want {
			t.Errorf("Decide(%d, %d, %d, %d) = %v, want %v", tt.inflight, tt.queued, tt.max, tt.maxQueue, got, tt.want)
		}
	}
}

func is429(t *testing.T, err error) {
	t.Helper()
	e := errs.As(err)
	if e == nil || e.Status != http.StatusTooManyRequests || e.Code != "too_many_requests" || e.RetryAfter < 1 {
		t.Fatalf("err %v, want a 429 too_many_requests with Retry-After", err)
	}
}

// Invariant: a tenant gets MaxInflight slots, then waits, then 429; other
// tenants are unaffected; a released slot goes to the first waiter.
func TestTenants(t *testing.T) {
	l := New(Config{MaxInflight: 2, MaxQueue: 1, QueueWait: time.Second})
	ctx := context.Background()
	r1, err := l.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another tenant is not limited by a's use.
	rb, err := l.Acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	rb()

	got := make(chan error, 1)
	var r3 func()
	go func() {
		var err error
		r3, err = l.Acquire(ctx, "a")
		got <- err
	}()
	waitFor(t, func() bool { _, w := l.Inflight("a"); return w == 1 })
	// Queue full: the next one is refused at once.
	start := time.Now()
	_, err = l.Acquire(ctx, "a")
	is429(t, err)
	if time.Since(start) > 100*time.Millisecond {
		t.Fatal("a refusal with a full queue waited")
	}
	r1()
	r1() // a second release is a no-op
	if err := <-got; err != nil {
		t.Fatalf("queued request: %v", err)
	}
	if run, wait := l.Inflight("a"); run != 2 || wait != 0 {
		t.Fatalf("running %d waiting %d after a hand-over, want 2 and 0", run, wait)
	}
	r2()
	r3()
	if run, wait := l.Inflight("a"); run != 0 || wait != 0 {
		t.Fatalf("running %d waiting %d after all releases", run, wait)
	}
	if len(l.m) != 0 {
		t.Fatalf("%d idle tenants kept", len(l.m))
	}
}

// Invariant: a queued request gives up with a 429 after QueueWait, or when
// its client leaves, and leaves the queue.
func TestTenantsQueueTimeout(t *testing.T) {
	l := New(Config{MaxInflight: 1, MaxQueue: 5, QueueWait: 50 * time.Millisecond})
	r, err := l.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	defer r()
	start := time.Now()
	_, err = l.Acquire(context.Background(), "a")
	is429(t, err)
	if el := time.Since(start); el < 40*time.Millisecond || el > time.Second {
		t.Fatalf("gave up after %v, want about 50ms", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = l.Acquire(ctx, "a")
	is429(t, err)
	if _, w := l.Inflight("a"); w != 0 {
		t.Fatalf("%d waiters left in the queue", w)
	}
}

// Invariant: under concurrent load never more than MaxInflight run at once,
// and every admitted request is released.
func TestTenantsConcurrent(t *testing.T) {
	l := New(Config{MaxInflight: 3, MaxQueue: 100, QueueWait: 5 * time.Second})
	var mu sync.Mutex
	running, peak := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.Acquire(context.Background(), "a")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
			r()
		}()
	}
	wg.Wait()
	if peak > 3 {
		t.Fatalf("%d ran at once, limit 3", peak)
	}
	if run, wait := l.Inflight("a"); run != 0 || wait != 0 {
		t.Fatalf("running %d waiting %d at the end", run, wait)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}
