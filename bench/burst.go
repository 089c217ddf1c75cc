package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// burst measures many new tenants arriving at once on a node with a fixed
// pool: every first request sent together (one connection each), how many
// fail, how long until all are served, their latency, and the rate at which
// the node creates containers until its pool is full again.
func (e *env) burst(ctx context.Context) ([]Figure, error) {
	c := e.counts()
	pool := strconv.Itoa(c.burstPool)
	n, err := e.startNode(ctx, "--pool-size", pool, "--pool-max", pool)
	if err != nil {
		return nil, err
	}
	defer n.stop()
	for j := 0; j < c.burst; j++ {
		if err := n.tenantWith(fmt.Sprintf("burst-%d", j), fnCode, nil); err != nil {
			return nil, err
		}
	}
	if err := n.poolFull(3 * time.Minute); err != nil {
		return nil, err
	}
	created0, err := n.metric("wharf_pool_creations_total")
	if err != nil {
		return nil, err
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      dist
		failures int
		first    error
	)
	start := time.Now()
	for j := 0; j < c.burst; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, _, err := timeGet(fmt.Sprintf("%s/run/burst-%d/f", n.URL, j))
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, d)
			if err != nil {
				failures++
				if first == nil {
					first = err
				}
			}
		}()
	}
	wg.Wait()
	allServed := time.Since(start)
	if err := n.poolFull(5 * time.Minute); err != nil {
		return nil, err
	}
	refilled := time.Since(start)
	created1, err := n.metric("wharf_pool_creations_total")
	if err != nil {
		return nil, err
	}
	created := created1 - created0
	e.logf("burst: %d first requests, %d failed (%v), all answered in %v, pool refilled in %v, %v containers created",
		c.burst, failures, first, allServed.Round(time.Millisecond), refilled.Round(time.Millisecond), created)
	what := fmt.Sprintf("%d new tenants at once, pool %d", c.burst, c.burstPool)
	f := newFigure("burst", what+": requests failed", "requests", float64(failures), nil, "", atMost(0))
	if first != nil {
		f.Note = "first failure: " + first.Error()
	}
	rate := newFigure("burst", what+": container creation rate", "containers/s", created/refilled.Seconds(), nil, "", nil)
	rate.Note = fmt.Sprintf("%v containers created from the burst's start until the pool was full again", created)
	return []Figure{f,
		newFigure("burst", what+": time until all answered", "s", allServed.Seconds(), nil, "", nil),
		newFigure("burst", what+": first request p50", "ms", ms(lat.q(0.5)), nil, "", nil),
		newFigure("burst", what+": first request p99", "ms", ms(lat.q(0.99)), nil, "", nil),
		newFigure("burst", what+": time until the pool is full again", "s", refilled.Seconds(), nil, "", nil),
		rate,
	}, nil
}
