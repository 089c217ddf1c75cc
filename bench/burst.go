package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// burst measures many new tenants arriving at once on a node with a fixed
// pool: every first request sent together (one connection each), how many
// fail, how long until all are served (a failed one retried as a webhook
// sender would, after its Retry-After), and the rate at which the node
// creates containers until its pool is full again.
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
		firstTry dist // latency of the first attempts that succeeded
		served   dist // from the burst's start until each tenant's answer
		failures int
		first    error
		lost     error
	)
	start := time.Now()
	for j := 0; j < c.burst; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := getRetrying(fmt.Sprintf("%s/run/burst-%d/f", n.URL, j), start.Add(5*time.Minute))
			mu.Lock()
			defer mu.Unlock()
			if r.firstErr == nil {
				firstTry = append(firstTry, r.first)
			} else {
				failures++
				if first == nil {
					first = r.firstErr
				}
			}
			if r.err != nil && lost == nil {
				lost = r.err
			}
			served = append(served, r.done.Sub(start))
		}()
	}
	wg.Wait()
	if lost != nil {
		return nil, fmt.Errorf("a tenant of the burst was never served, even retrying: %w", lost)
	}
	allServed := served.max()
	if err := n.poolFull(5 * time.Minute); err != nil {
		return nil, err
	}
	refilled := time.Since(start)
	created1, err := n.metric("wharf_pool_creations_total")
	if err != nil {
		return nil, err
	}
	created := created1 - created0
	e.logf("burst: %d first requests, %d failed (%v), all served in %v, pool refilled in %v, %v containers created",
		c.burst, failures, first, allServed.Round(time.Millisecond), refilled.Round(time.Millisecond), created)
	what := fmt.Sprintf("%d new tenants at once, pool %d", c.burst, c.burstPool)
	f := newFigure("burst", what+": first requests failed", "requests", float64(failures), nil, "", atMost(0))
	if first != nil {
		f.Note = "first failure: " + first.Error()
	}
	rate := newFigure("burst", what+": container creation rate", "containers/s", created/refilled.Seconds(), nil, "", nil)
	rate.Note = fmt.Sprintf("%v containers created from the burst's start until the pool was full again", created)
	return []Figure{f,
		newFigure("burst", what+": time until all served, retrying on 503", "s", allServed.Seconds(), nil, "", nil),
		newFigure("burst", what+": time to served, p50", "ms", ms(served.q(0.5)), nil, "", nil),
		newFigure("burst", what+": time to served, p99", "ms", ms(served.q(0.99)), nil, "", nil),
		newFigure("burst", what+": first requests that succeeded, p99", "ms", ms(firstTry.q(0.99)), nil, "", nil),
		newFigure("burst", what+": time until the pool is full again", "s", refilled.Seconds(), nil, "", nil),
		rate,
	}, nil
}

// retried is the story of one tenant's requests in a burst.
type retried struct {
	first    time.Duration // the first attempt's latency
	firstErr error         // why the first attempt failed, if it did
	done     time.Time     // when an attempt succeeded (or the last failed)
	err      error         // the last failure when none succeeded
}

// getRetrying GETs url until it answers 200, waiting Retry-After (1 s when
// absent) after a 503 or 429, until deadline; any other failure ends it.
func getRetrying(url string, deadline time.Time) retried {
	var r retried
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		resp, err := httpClient.Get(url)
		var status int
		wait := time.Second
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
			if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s >= 0 {
				wait = time.Duration(s) * time.Second
			}
			if status != 200 {
				err = fmt.Errorf("GET %s: status %d", url, status)
			}
		}
		r.done = time.Now()
		if attempt == 0 {
			r.first, r.firstErr = r.done.Sub(t0), err
		}
		if err == nil {
			r.err = nil
			return r
		}
		r.err = err
		if (status != 503 && status != 429) || r.done.Add(wait).After(deadline) {
			return r
		}
		time.Sleep(wait)
	}
}
