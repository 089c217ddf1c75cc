package handler

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/engine/enginetest"
	"github.com/wharfhq/wharf/pool"
)

// setupWith is setup with a handler configured by cfg; Stats and Probe
// default to the fake engine's and a probe that succeeds.
func setupWith(t *testing.T, size int, cfg Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := enginetest.New()
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
	cfg.ColdStartTimeout = 5 * time.Second
	if cfg.Probe == nil {
		cfg.Probe = func(context.Context, string) error { return nil }
	}
	if cfg.Stats == nil {
		cfg.Stats = f.ContainerStats
	}
	h := New(p, cfg, quiet())
	t.Cleanup(func() {
		h.Close(context.Background())
		cancel()
		<-done
	})
	return &fixture{eng: f, pool: p, h: h}
}

func TestSaturated(t *testing.T) {
	tests := []struct {
		pids, engineLimit, configured int64
		want                          bool
	}{
		{10, 64, 64, false},
		{57, 64, 64, false},
		{58, 64, 64, true}, // 90%
		{64, 64, 64, true},
		{58, 0, 64, true},  // the engine reports no limit: the configured one counts
		{58, 0, 0, false},  // no limit known at all
		{30, 32, 64, true}, // the engine's own limit wins
	}
	for _, tt := range tests {
		got := saturated(engine.ContainerStats{Pids: tt.pids, PidsLimit: tt.engineLimit}, tt.configured)
		if got != tt.want {
			t.Errorf("saturated(%d of %d, configured %d) = %v, want %v", tt.pids, tt.engineLimit, tt.configured, got, tt.want)
		}
	}
}

func TestWatchVerdict(t *testing.T) {
	tests := []struct {
		strikes     int
		sat         bool
		wantStrikes int
		wantReplace bool
	}{
		{0, false, 0, false},
		{0, true, 1, false},
		{1, true, 2, true},
		{1, false, 0, false}, // a clean check forgives
		{5, true, 6, true},
	}
	for _, tt := range tests {
		s, r := watchVerdict(tt.strikes, tt.sat)
		if s != tt.wantStrikes || r != tt.wantReplace {
			t.Errorf("watchVerdict(%d, %v) = %d, %v; want %d, %v", tt.strikes, tt.sat, s, r, tt.wantStrikes, tt.wantReplace)
		}
	}
}

func waitGone(t *testing.T, a *Assignment, want bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for a.Gone() != want {
		if time.Now().After(deadline) {
			t.Fatalf("gone = %v after %v, want %v", a.Gone(), within, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Invariant: the watchdog replaces a container that stays at its pids limit
// and leaves a busy but sane one alone.
func TestWatchReplacesSaturatedContainer(t *testing.T) {
	fx := setupWith(t, 2, Config{PidsLimit: 64})
	bomb, _ := acquire(t, fx.h, "bomb")
	busy, _ := acquire(t, fx.h, "busy")
	fx.eng.SetStats(bomb.C.ID, engine.ContainerStats{Pids: 64, PidsLimit: 64})
	fx.eng.SetStats(busy.C.ID, engine.ContainerStats{Pids: 40, PidsLimit: 64})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fx.h.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	waitGone(t, bomb, true, 2*time.Second)
	time.Sleep(50 * time.Millisecond)
	if busy.Gone() {
		t.Fatal("a container below the limit was replaced")
	}
	if _, cold := acquire(t, fx.h, "bomb"); !cold {
		t.Fatal("the bomb's tenant did not get a fresh container")
	}
}

// Invariant: after a timeout, an unresponsive runner or a saturated
// container is replaced at once; a healthy one is kept.
func TestAfterTimeout(t *testing.T) {
	probeErr := errors.New("probe timed out")
	tests := []struct {
		name    string
		probe   error
		stats   engine.ContainerStats
		replace bool
	}{
		{"healthy", nil, engine.ContainerStats{Pids: 12, PidsLimit: 64}, false},
		{"blocked event loop", probeErr, engine.ContainerStats{Pids: 12, PidsLimit: 64}, true},
		{"fork bomb", nil, engine.ContainerStats{Pids: 64, PidsLimit: 64}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := setupWith(t, 1, Config{PidsLimit: 64, Probe: func(context.Context, string) error { return tt.probe }})
			a, _ := acquire(t, fx.h, "t")
			fx.eng.SetStats(a.C.ID, tt.stats)
			fx.h.Suspect(a)
			if tt.replace {
				waitGone(t, a, true, 2*time.Second)
				return
			}
			time.Sleep(50 * time.Millisecond)
			if a.Gone() {
				t.Fatal("a healthy container was replaced")
			}
		})
	}
}
