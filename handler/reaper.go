package handler

import (
	"context"
	"time"
)

// makeRoom runs before a claim and reserves a place for it: a closed handler
// refuses, and at capacity (assigned containers plus claims under way) the
// least recently used idle container is evicted; if every container is
// serving a request, the claim fails with ErrCapacity. The caller must
// release the reservation (unreserve) once the claim registered or failed.
func (h *Handler) makeRoom() error {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return ErrClosed
		}
		if !atCapacity(len(h.byTenant)+h.claiming, h.cfg.Limits) {
			h.claiming++
			h.mu.Unlock()
			return nil
		}
		all, cands := h.candidatesLocked()
		i, ok := lruIdle(cands)
		h.mu.Unlock()
		if !ok {
			return ErrCapacity
		}
		// drop re-checks under the lock; a request that took a hold in between
		// makes the victim's removal wait for its release. Either way the
		// victim is unmapped, so the next round finds room.
		if h.drop(all[i], ReasonCapacity, false) {
			h.log.Info("container evicted", "tenant", all[i].Tenant, "container", all[i].C.Name, "reason", ReasonCapacity)
		}
	}
}

func (h *Handler) unreserve() {
	h.mu.Lock()
	h.claiming--
	h.mu.Unlock()
}

func (h *Handler) candidatesLocked() ([]*Assignment, []candidate) {
	all := make([]*Assignment, 0, len(h.byTenant))
	cands := make([]candidate, 0, len(h.byTenant))
	for _, a := range h.byTenant {
		all = append(all, a)
		cands = append(cands, candidate{tenant: a.Tenant, inflight: a.inflight, lastUsed: a.lastUsed, since: a.Since})
	}
	return all, cands
}

// Reap evicts expired containers now: idle ones past the idle timeout and
// any past its lifetime. It returns how many it evicted.
func (h *Handler) Reap(now time.Time) int {
	h.mu.Lock()
	all, cands := h.candidatesLocked()
	type victim struct {
		a      *Assignment
		reason string
	}
	var victims []victim
	for i, c := range cands {
		if reason, ok := expiry(c, now, h.cfg.Limits); ok {
			victims = append(victims, victim{all[i], reason})
		}
	}
	h.mu.Unlock()
	n := 0
	for _, v := range victims {
		// An idle victim that got a request meanwhile keeps serving it; its
		// removal waits for the release (drop with now=false).
		if h.drop(v.a, v.reason, false) {
			n++
			h.log.Info("container evicted", "tenant", v.a.Tenant, "container", v.a.C.Name, "reason", v.reason)
		}
	}
	return n
}

// RunReaper calls Reap periodically until ctx ends.
func (h *Handler) RunReaper(ctx context.Context) {
	every := reapInterval(h.cfg.Limits)
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.Reap(now)
		}
	}
}

// reapInterval checks often enough to evict within about a tenth of the
// shortest limit, between 100 ms and 30 s; 0 when nothing ever expires.
func reapInterval(lim Limits) time.Duration {
	shortest := time.Duration(0)
	for _, d := range []time.Duration{lim.IdleTimeout, lim.MaxLifetime} {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return 0
	}
	return min(max(shortest/10, 100*time.Millisecond), 30*time.Second)
}

// Stats is a snapshot for metrics.
type Stats struct {
	Assigned   int
	Busy       int // assignments with a request in flight
	ColdStarts int64
	Evictions  map[string]int64
}

// Stats returns a snapshot of the handler's counters.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	st := Stats{Assigned: len(h.byTenant), ColdStarts: h.coldStarts.Load(), Evictions: map[string]int64{}}
	for _, a := range h.byTenant {
		if a.inflight > 0 {
			st.Busy++
		}
	}
	h.mu.Unlock()
	for r, c := range h.evictions {
		st.Evictions[r] = c.Load()
	}
	return st
}
