package handler

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine/enginetest"
	"github.com/wharfhq/wharf/pool"
)

// Invariant: the Assigned hook learns of every container given to a tenant,
// once per claim (not on warm requests), with the time the ready container
// was taken, so the node follows exactly the output that belongs to the tenant.
func TestAssignedHook(t *testing.T) {
	dir := t.TempDir()
	f := enginetest.New()
	p, err := pool.New(pool.Config{
		NodeID: "n1", Image: "img", ImageHash: "h", Network: "net",
		Root: filepath.Join(dir, "c"), ModulesDir: filepath.Join(dir, "m"), Size: 2, MaxParallel: 2,
		Probe: func(context.Context, string) error { return nil },
	}, f, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	type call struct {
		tenant, id string
		since      time.Time
	}
	var mu sync.Mutex
	var calls []call
	h := New(p, Config{ColdStartTimeout: 5 * time.Second, Probe: func(context.Context, string) error { return nil },
		Assigned: func(tenant string, c *pool.Container, since time.Time) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, call{tenant, c.ID, since})
		}}, quiet())
	t.Cleanup(func() {
		h.Close(context.Background())
		cancel()
		<-done
	})

	before := time.Now()
	a, _ := acquire(t, h, "acme")
	acquire(t, h, "acme")
	b, _ := acquire(t, h, "globex")
	h.Fail(a, "test")
	a2, _ := acquire(t, h, "acme")

	mu.Lock()
	defer mu.Unlock()
	want := []call{{"acme", a.C.ID, time.Time{}}, {"globex", b.C.ID, time.Time{}}, {"acme", a2.C.ID, time.Time{}}}
	if len(calls) != len(want) {
		t.Fatalf("%d calls, want %d: %+v", len(calls), len(want), calls)
	}
	for i, w := range want {
		c := calls[i]
		if c.tenant != w.tenant || c.id != w.id || c.since.Before(before) || c.since.After(time.Now()) {
			t.Fatalf("call %d = %+v, want %s %s at the claim", i, c, w.tenant, w.id)
		}
	}
}
