package handler

import (
	"time"
)

// Limits bound how many tenant containers a node holds and for how long.
type Limits struct {
	MaxContainers int           // tenant containers on the node; 0 = unlimited
	IdleTimeout   time.Duration // a tenant idle this long loses its container; 0 = never
	MaxLifetime   time.Duration // a container retires after this long; 0 = never
}

// Eviction reasons, as counted in metrics.
const (
	ReasonIdle     = "idle"
	ReasonCapacity = "capacity"
	ReasonLifetime = "lifetime"
	ReasonDied     = "died"
	ReasonFailed   = "failed"
	ReasonTenant   = "tenant_deleted"
	ReasonShutdown = "shutdown"
)

// candidate is what the eviction decisions know about one assignment.
type candidate struct {
	tenant   string
	inflight int
	lastUsed time.Time
	since    time.Time
}

// expiry says whether a container must go now and why: idle past the idle
// timeout (only with no request in flight), or past its lifetime (retired
// even when busy: it stops taking requests and goes when the last one ends).
func expiry(c candidate, now time.Time, lim Limits) (string, bool) {
	if lim.MaxLifetime > 0 && now.Sub(c.since) >= lim.MaxLifetime {
		return ReasonLifetime, true
	}
	if lim.IdleTimeout > 0 && c.inflight == 0 && now.Sub(c.lastUsed) >= lim.IdleTimeout {
		return ReasonIdle, true
	}
	return "", false
}

// lruIdle picks the least recently used container with no request in
// flight, to make room at capacity; ok is false when every one is busy.
func lruIdle(cands []candidate) (int, bool) {
	best := -1
	for i, c := range cands {
		if c.inflight != 0 {
			continue
		}
		if best < 0 || c.lastUsed.Before(cands[best].lastUsed) {
			best = i
		}
	}
	return best, best >= 0
}

// atCapacity says whether claiming one more container needs an eviction first.
func atCapacity(assigned int, lim Limits) bool {
	return lim.MaxContainers > 0 && assigned >= lim.MaxContainers
}
