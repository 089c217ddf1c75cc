package handler

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/pool"
)

// Invariant: every claimed container is attached (the storage socket) before
// its tenant's first request holds it, and detached before it is removed,
// whatever removes it; a failed Attach fails only that claim.
func TestAttachDetachHooks(t *testing.T) {
	var mu sync.Mutex
	attached := map[string]string{} // container id -> tenant, while attached
	var detached []string
	failNext := true
	fx := setupWith(t, 3, Config{
		Attach: func(tenant string, c *pool.Container) error {
			mu.Lock()
			defer mu.Unlock()
			if tenant == "flaky" && failNext {
				failNext = false
				return errors.New("no socket today")
			}
			// The container's directories exist and it is already the tenant's.
			if _, err := os.Stat(c.AppDir); err != nil {
				t.Errorf("Attach before the app dir exists: %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(c.Dir, "owner")); err != nil || string(b) != tenant {
				t.Errorf("Attach before the owner is recorded: %q %v", b, err)
			}
			attached[c.ID] = tenant
			return nil
		},
		Detach: func(c *pool.Container) {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := attached[c.ID]; !ok {
				t.Errorf("Detach of %s, never attached", c.ID)
			}
			delete(attached, c.ID)
			detached = append(detached, c.ID)
		},
	})
	isAttached := func(id, tenant string) bool {
		mu.Lock()
		defer mu.Unlock()
		return attached[id] == tenant
	}

	a, _ := acquire(t, fx.h, "acme")
	if !isAttached(a.C.ID, "acme") {
		t.Fatal("acme's container was handed out unattached")
	}
	fx.h.Release(a)
	a2, cold := acquire(t, fx.h, "acme")
	fx.h.Release(a2)
	if cold || a2 != a {
		t.Fatal("the warm request claimed again")
	}

	// A failed Attach fails the claim and removes the container; the next
	// request of that tenant claims a fresh one.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := fx.h.Acquire(ctx, "flaky"); err == nil {
		t.Fatal("a claim whose Attach failed succeeded")
	}
	f, _ := acquire(t, fx.h, "flaky")
	if !isAttached(f.C.ID, "flaky") {
		t.Fatal("flaky's second container is not attached")
	}
	fx.h.Release(f)

	b, _ := acquire(t, fx.h, "beta")
	fx.h.Release(b)
	fx.h.Fail(a, "test")             // a failed request
	fx.h.DropTenant("beta")          // a deleted tenant
	fx.h.Close(context.Background()) // the drain
	mu.Lock()
	defer mu.Unlock()
	want := []string{a.C.ID, b.C.ID, f.C.ID}
	slices.Sort(want)
	slices.Sort(detached)
	if !slices.Equal(detached, want) || len(attached) != 0 {
		t.Fatalf("detached %v, want %v; still attached %v", detached, want, attached)
	}
	for _, c := range fx.eng.Live() {
		if slices.Contains(want, c.Info.ID) {
			t.Fatalf("container %s detached but not removed", c.Info.ID)
		}
	}
}
