package handler

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/wharfhq/wharf/errs"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Window: time.Minute, Threshold: 3, Base: time.Second, Max: 10 * time.Second}
	now := time.Unix(1_000_000, 0)
	ago := func(ds ...time.Duration) []time.Time {
		out := make([]time.Time, len(ds))
		for i, d := range ds {
			out[i] = now.Add(-d)
		}
		return out
	}
	tests := []struct {
		name   string
		deaths []time.Time
		want   time.Duration
	}{
		{"none", nil, 0},
		{"below the threshold", ago(5*time.Second, time.Second), 0},
		{"at the threshold, just died", ago(3*time.Second, 2*time.Second, 0), time.Second},
		{"at the threshold, wait already served", ago(30*time.Second, 20*time.Second, 2*time.Second), 0},
		{"doubles per further death", ago(4*time.Second, 3*time.Second, 2*time.Second, time.Second, 0), 4 * time.Second},
		{"counted from the last death", ago(4*time.Second, 3*time.Second, 2*time.Second, time.Second, 500*time.Millisecond), 3500 * time.Millisecond},
		{"capped", ago(9*time.Second, 8*time.Second, 7*time.Second, 6*time.Second, 5*time.Second, 4*time.Second, 3*time.Second, 0), 10 * time.Second},
		{"old deaths forgotten", ago(3*time.Minute, 2*time.Minute, 0), 0},
		{"only deaths inside the window count", ago(2*time.Minute, 30*time.Second, 20*time.Second, 0), time.Second},
		{"order does not matter", ago(0, 3*time.Second, 2*time.Second), time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.Delay(tt.deaths, now); got != tt.want {
				t.Fatalf("Delay = %v, want %v", got, tt.want)
			}
		})
	}
	// Many deaths never overflow the shift into a short or negative wait.
	many := make([]time.Time, 200)
	for i := range many {
		many[i] = now
	}
	if got := b.Delay(many, now); got != b.Max {
		t.Fatalf("200 deaths: %v, want the max %v", got, b.Max)
	}
	if got := (Backoff{}).Delay(many, now); got != 0 {
		t.Fatalf("a zero policy delays by %v", got)
	}
}

// Invariant: a tenant whose containers keep dying gets 503 tenant_backoff
// with Retry-After instead of a new container, other tenants are served, and
// a tenant that already has a container keeps it; after the wait it is
// served again.
func TestCrashLoopingTenantIsSlowedDown(t *testing.T) {
	fx := setupWith(t, 2, Config{Backoff: Backoff{Window: time.Minute, Threshold: 2, Base: 300 * time.Millisecond, Max: time.Second}})
	for i := 0; i < 2; i++ {
		a, _ := acquire(t, fx.h, "loop")
		fx.h.ContainerGone(a.C.ID)
	}
	takes := fx.pool.Stats().Takes
	_, _, err := fx.h.Acquire(context.Background(), "loop")
	e := errs.As(err)
	if e == nil || e.Status != http.StatusServiceUnavailable || e.Code != "tenant_backoff" || e.RetryAfter < 1 {
		t.Fatalf("acquire in backoff: %v", err)
	}
	if fx.pool.Stats().Takes != takes {
		t.Fatal("a container was taken from the pool during the backoff")
	}
	acquire(t, fx.h, "neighbour")
	time.Sleep(350 * time.Millisecond)
	if _, cold := acquire(t, fx.h, "loop"); !cold {
		t.Fatal("expected a fresh container after the wait")
	}
}

// Invariant: deleting a tenant forgets its deaths, and a tenant's deliberate
// removal (delete, shutdown) is not a death.
func TestBackoffForgetsDeletedTenants(t *testing.T) {
	fx := setupWith(t, 2, Config{Backoff: Backoff{Window: time.Minute, Threshold: 1, Base: time.Minute, Max: time.Minute}})
	a, _ := acquire(t, fx.h, "gone")
	fx.h.Fail(a, "test")
	if _, _, err := fx.h.Acquire(context.Background(), "gone"); errs.As(err) == nil || errs.As(err).Code != "tenant_backoff" {
		t.Fatalf("no backoff after a death: %v", err)
	}
	fx.h.DropTenant("gone")
	acquire(t, fx.h, "gone")
	fx.h.DropTenant("gone")
	acquire(t, fx.h, "gone") // a deletion is not a death
}
