package handler

import (
	"math"
	"sync"
	"time"
)

// Backoff slows down a tenant whose containers keep dying (a crash loop, an
// OOM on every request, a fork bomb): past Threshold deaths within Window,
// each new container for it waits Base, doubled per further death, at most
// Max, counted from the last death. Meanwhile its requests answer 503 with
// Retry-After instead of draining the pool one container per request.
type Backoff struct {
	Window    time.Duration
	Threshold int
	Base      time.Duration
	Max       time.Duration
}

// DefaultBackoff tolerates a few deaths (a deploy of buggy code, an OOM) and
// then slows a crash loop to at most one container per minute.
var DefaultBackoff = Backoff{Window: 2 * time.Minute, Threshold: 3, Base: time.Second, Max: time.Minute}

// Delay is the pure decision: given a tenant's container deaths (oldest
// first) it returns how long from now the tenant must wait for a container.
func (b Backoff) Delay(deaths []time.Time, now time.Time) time.Duration {
	recent := 0
	var last time.Time
	for _, d := range deaths {
		if now.Sub(d) < b.Window {
			recent++
			if d.After(last) {
				last = d
			}
		}
	}
	if b.Threshold <= 0 || recent < b.Threshold {
		return 0
	}
	wait := b.Max
	if shift := recent - b.Threshold; shift < 62 && b.Base > 0 && b.Base <= math.MaxInt64>>shift {
		wait = min(b.Base<<shift, b.Max)
	}
	if rest := last.Add(wait).Sub(now); rest > 0 {
		return rest
	}
	return 0
}

// deathLog keeps each tenant's recent container deaths.
type deathLog struct {
	b  Backoff
	mu sync.Mutex
	m  map[string][]time.Time
}

// maxDeaths bounds the memory per tenant; the policy never needs more.
const maxDeaths = 64

func newDeathLog(b Backoff) *deathLog { return &deathLog{b: b, m: map[string][]time.Time{}} }

func (l *deathLog) record(tenant string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ds := l.prune(l.m[tenant], at)
	if len(ds) >= maxDeaths {
		ds = ds[1:]
	}
	l.m[tenant] = append(ds, at)
}

func (l *deathLog) delay(tenant string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	ds := l.prune(l.m[tenant], now)
	if len(ds) == 0 {
		delete(l.m, tenant)
		return 0
	}
	l.m[tenant] = ds
	return l.b.Delay(ds, now)
}

// prune drops deaths that no longer count.
func (l *deathLog) prune(ds []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ds) && now.Sub(ds[i]) >= l.b.Window {
		i++
	}
	return ds[i:]
}

func (l *deathLog) forget(tenant string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, tenant)
}
