package handler

import (
	"context"
	"sync"
)

// tracker counts background work (container removals, probes). Unlike a
// WaitGroup it may gain work while someone waits: a late failure report
// during shutdown must still be able to start a removal.
type tracker struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0
}

func (t *tracker) add() {
	t.mu.Lock()
	if t.n == 0 {
		t.zero = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		close(t.zero)
	}
	t.mu.Unlock()
}

// wait returns when no work is under way or ctx ends.
func (t *tracker) wait(ctx context.Context) {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return
	}
	zero := t.zero
	t.mu.Unlock()
	select {
	case <-zero:
	case <-ctx.Done():
	}
}

// go runs f in the background, tracked.
func (t *tracker) goTracked(f func()) {
	t.add()
	go func() {
		defer t.done()
		f()
	}()
}
