package handler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wharfhq/wharf/engine"
)

// saturated reports whether a container's processes and threads fill its
// pids limit: a fork bomb held at the limit, or leaked threads. Its runner
// can then start neither a thread nor a child, and its CPU quota goes to
// whatever keeps trying. The engine's counters are read from outside the
// container, so tenant code cannot make them lie.
func saturated(s engine.ContainerStats, configured int64) bool {
	limit := configured
	if s.PidsLimit > 0 {
		limit = s.PidsLimit
	}
	return limit > 0 && s.Pids*10 >= limit*9
}

// strikesToReplace is how many consecutive saturated checks replace a
// container: one could be a burst of legitimate children finishing.
const strikesToReplace = 2

// watchVerdict is the watchdog's pure decision for one check of one
// container: the new strike count, and whether to replace the container.
func watchVerdict(strikes int, isSaturated bool) (int, bool) {
	if !isSaturated {
		return 0, false
	}
	strikes++
	return strikes, strikes >= strikesToReplace
}

// afterTimeout checks a container whose function ran past its timeout: a
// runner that does not answer its probe (a blocked event loop) or a
// container at its pids limit (a fork bomb started by the function) is
// replaced at once.
func (h *Handler) afterTimeout(a *Assignment) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := h.cfg.Probe(ctx, a.C.IP); err != nil {
		h.Fail(a, "runner unresponsive after a timeout: "+err.Error())
		return
	}
	if h.cfg.Stats == nil {
		return
	}
	sctx, scancel := context.WithTimeout(context.Background(), statsTimeout)
	defer scancel()
	if s, err := h.cfg.Stats(sctx, a.C.ID); err == nil && saturated(s, h.cfg.PidsLimit) {
		h.Fail(a, fmt.Sprintf("%d of %d processes and threads in use after a timeout", s.Pids, max(s.PidsLimit, h.cfg.PidsLimit)))
	}
}

// Watch checks every tenant container each interval until ctx ends and
// replaces one found saturated twice in a row, so a fork bomb that outlives
// its request (the function answered and left it running) does not keep the
// tenant's container unusable.
func (h *Handler) Watch(ctx context.Context, interval time.Duration) {
	if h.cfg.Stats == nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	strikes := map[*Assignment]int{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		live := h.assignments()
		stats := h.sample(ctx, live)
		seen := map[*Assignment]bool{}
		for i, a := range live {
			seen[a] = true
			if stats[i] == nil {
				continue // gone (the event watcher handles it) or the engine is slow: no verdict
			}
			n, replace := watchVerdict(strikes[a], saturated(*stats[i], h.cfg.PidsLimit))
			strikes[a] = n
			if replace {
				h.Fail(a, fmt.Sprintf("%d of %d processes and threads in use for %d checks",
					stats[i].Pids, max(stats[i].PidsLimit, h.cfg.PidsLimit), n))
			}
		}
		for a := range strikes {
			if !seen[a] {
				delete(strikes, a)
			}
		}
	}
}

// statsTimeout bounds one stats sample. Docker answers a one-shot stats
// request at its collector's next tick, up to a second later.
const statsTimeout = 3 * time.Second

// maxSampling bounds concurrent stats requests. They are concurrent because
// each mostly waits for the engine's tick: a round costs about a second
// whether it samples one container or many.
const maxSampling = 32

// sample reads the stats of every assignment, concurrently; nil where a
// sample failed.
func (h *Handler) sample(ctx context.Context, as []*Assignment) []*engine.ContainerStats {
	out := make([]*engine.ContainerStats, len(as))
	sem := make(chan struct{}, maxSampling)
	var wg sync.WaitGroup
	for i, a := range as {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			cctx, cancel := context.WithTimeout(ctx, statsTimeout)
			defer cancel()
			if s, err := h.cfg.Stats(cctx, a.C.ID); err == nil {
				out[i] = &s
			}
		}()
	}
	wg.Wait()
	return out
}

// assignments returns the live tenant containers.
func (h *Handler) assignments() []*Assignment {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Assignment, 0, len(h.byTenant))
	for _, a := range h.byTenant {
		out = append(out, a)
	}
	return out
}
