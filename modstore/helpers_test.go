package modstore

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/store/storetest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeClock is a settable clock shared by the stores of a test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startStore starts an embedded FerretDB and returns its URI.
func startStore(t *testing.T) string {
	t.Helper()
	return storetest.Start(t, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// dial opens a Store on its own connection pool and closes it at cleanup.
func dial(t *testing.T, uri string, opt Options) *Store {
	t.Helper()
	s, err := Dial(testCtx(t), uri, "", opt)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}
