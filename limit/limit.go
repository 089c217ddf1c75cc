// Package limit bounds what one tenant can have in flight on a node, so a
// tenant flooding its webhooks queues briefly and then gets 429s instead of
// taking the proxy's connections, memory and its container's sockets.
package limit

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/wharfhq/wharf/errs"
)

// Decision is what happens to one more request of a tenant.
type Decision int

const (
	Admit  Decision = iota // run now
	Queue                  // wait for a slot
	Reject                 // 429
)

// Decide is the admission rule: run while fewer than maxInflight run, else
// wait in a queue of at most maxQueue, else refuse.
func Decide(inflight, queued, maxInflight, maxQueue int) Decision {
	switch {
	case inflight < maxInflight:
		return Admit
	case queued < maxQueue:
		return Queue
	default:
		return Reject
	}
}

// Config is the per-tenant limit.
type Config struct {
	MaxInflight int           // requests of one tenant running at once
	MaxQueue    int           // requests of one tenant waiting for a slot
	QueueWait   time.Duration // how long one waits before a 429
}

// Tenants enforces Config per tenant. Slots pass from a finishing request to
// the longest waiting one (first come, first served).
type Tenants struct {
	cfg Config

	mu sync.Mutex
	m  map[string]*tenant // only tenants with requests running or waiting
}

type tenant struct {
	inflight int
	waiters  []chan struct{} // closed when the waiter is handed a slot
}

// New returns a limiter; MaxInflight < 1 is treated as 1.
func New(cfg Config) *Tenants {
	if cfg.MaxInflight < 1 {
		cfg.MaxInflight = 1
	}
	if cfg.MaxQueue < 0 {
		cfg.MaxQueue = 0
	}
	return &Tenants{cfg: cfg, m: map[string]*tenant{}}
}

// retryAfter is the Retry-After of a 429, in seconds.
const retryAfter = 1

func tooMany(tenant string) error {
	e := errs.New(http.StatusTooManyRequests, "too_many_requests",
		"Tenant %q has too many requests in flight; retry shortly.", tenant)
	e.RetryAfter = retryAfter
	return e
}

// Acquire takes a slot for one request of tenant, waiting up to QueueWait
// (or until ctx ends) when all are taken. The caller must call release once.
func (t *Tenants) Acquire(ctx context.Context, name string) (release func(), err error) {
	t.mu.Lock()
	st := t.m[name]
	if st == nil {
		st = &tenant{}
		t.m[name] = st
	}
	switch Decide(st.inflight, len(st.waiters), t.cfg.MaxInflight, t.cfg.MaxQueue) {
	case Admit:
		st.inflight++
		t.mu.Unlock()
		return t.releaser(name, st), nil
	case Reject:
		t.mu.Unlock()
		return nil, tooMany(name)
	}
	ch := make(chan struct{})
	st.waiters = append(st.waiters, ch)
	t.mu.Unlock()

	timer := time.NewTimer(t.cfg.QueueWait)
	defer timer.Stop()
	select {
	case <-ch:
		return t.releaser(name, st), nil
	case <-timer.C:
	case <-ctx.Done():
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, w := range st.waiters {
		if w == ch {
			st.waiters = append(st.waiters[:i], st.waiters[i+1:]...)
			return nil, tooMany(name)
		}
	}
	// Handed a slot just as the wait ended: keep it.
	return t.releaser(name, st), nil
}

func (t *Tenants) releaser(name string, st *tenant) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			if len(st.waiters) > 0 {
				// The slot passes to the first waiter; inflight is unchanged.
				ch := st.waiters[0]
				st.waiters = st.waiters[1:]
				close(ch)
				return
			}
			st.inflight--
			if st.inflight == 0 && t.m[name] == st {
				delete(t.m, name)
			}
		})
	}
}

// Inflight returns the requests of tenant running and waiting.
func (t *Tenants) Inflight(name string) (running, waiting int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.m[name]; st != nil {
		return st.inflight, len(st.waiters)
	}
	return 0, 0
}
