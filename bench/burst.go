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
// creates containers until its pool is full again. The baseline is the same
// burst on a node whose containers Docker connects to the bridge
// (--container-network engine), after the one as shipped.
func (e *env) burst(ctx context.Context) ([]Figure, error) {
	c := e.counts()
	shipped, err := e.burstOnce(ctx, "burst")
	if err != nil {
		return nil, err
	}
	engine, err := e.burstOnce(ctx, "burstd", "--container-network", "engine")
	if err != nil {
		return nil, err
	}
	const base = "Docker connects the containers"
	what := fmt.Sprintf("%d new tenants at once, pool %d", c.burst, c.burstPool)
	// A count of failures has no ratio (its baseline may be 0): the
	// baseline's is a figure of its own.
	f := newFigure("burst", what+": first requests failed", "requests", float64(shipped.failures), nil, "", atMost(0))
	if shipped.first != nil {
		f.Note = "first failure: " + shipped.first.Error()
	}
	fd := newFigure("burst", what+": first requests failed when "+base, "requests", float64(engine.failures), nil, "", nil)
	if engine.first != nil {
		fd.Note = "first failure: " + engine.first.Error()
	}
	rate := newFigure("burst", what+": container creation rate", "containers/s", shipped.rate(), ptr(engine.rate()), base, nil)
	rate.Note = fmt.Sprintf("%v and %v containers created from the burst's start until the pool was full again", shipped.created, engine.created)
	return []Figure{f, fd,
		newFigure("burst", what+": time until all served, retrying on 503", "s", shipped.allServed.Seconds(), ptr(engine.allServed.Seconds()), base, nil),
		newFigure("burst", what+": time to served, p50", "ms", ms(shipped.served.q(0.5)), ptr(ms(engine.served.q(0.5))), base, nil),
		newFigure("burst", what+": time to served, p99", "ms", ms(shipped.served.q(0.99)), ptr(ms(engine.served.q(0.99))), base, nil),
		newFigure("burst", what+": first requests that succeeded, p99", "ms", ms(shipped.firstTry.q(0.99)), ptr(ms(engine.firstTry.q(0.99))), base, nil),
		newFigure("burst", what+": time until the pool is full again", "s", shipped.refilled.Seconds(), ptr(engine.refilled.Seconds()), base, nil),
		rate,
	}, nil
}

// burstRun is what one burst measured.
type burstRun struct {
	failures         int
	first            error // the first failure of a first request
	firstTry, served dist  // latency of the first attempts that succeeded; burst start to each tenant's answer
	allServed        time.Duration
	refilled         time.Duration // burst start until the pool was full again
	created          float64       // containers created meanwhile
}

func (r burstRun) rate() float64 { return r.created / r.refilled.Seconds() }

// burstOnce runs one burst on a node of its own started with extra args;
// prefix names its tenants.
func (e *env) burstOnce(ctx context.Context, prefix string, args ...string) (burstRun, error) {
	var br burstRun
	c := e.counts()
	pool := strconv.Itoa(c.burstPool)
	n, err := e.startNode(ctx, append([]string{"--pool-size", pool, "--pool-max", pool}, args...)...)
	if err != nil {
		return br, err
	}
	defer n.stop()
	for j := 0; j < c.burst; j++ {
		if err := n.tenantWith(fmt.Sprintf("%s-%d", prefix, j), fnCode, nil); err != nil {
			return br, err
		}
	}
	if err := n.poolFull(3 * time.Minute); err != nil {
		return br, err
	}
	created0, err := n.metric("wharf_pool_creations_total")
	if err != nil {
		return br, err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lost error
	)
	start := time.Now()
	for j := 0; j < c.burst; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := getRetrying(fmt.Sprintf("%s/run/%s-%d/f", n.URL, prefix, j), start.Add(5*time.Minute))
			mu.Lock()
			defer mu.Unlock()
			if r.firstErr == nil {
				br.firstTry = append(br.firstTry, r.first)
			} else {
				br.failures++
				if br.first == nil {
					br.first = r.firstErr
				}
			}
			if r.err != nil && lost == nil {
				lost = r.err
			}
			br.served = append(br.served, r.done.Sub(start))
		}()
	}
	wg.Wait()
	if lost != nil {
		return br, fmt.Errorf("a tenant of the burst (%v) was never served, even retrying: %w", args, lost)
	}
	br.allServed = br.served.max()
	if err := n.poolFull(5 * time.Minute); err != nil {
		return br, err
	}
	br.refilled = time.Since(start)
	created1, err := n.metric("wharf_pool_creations_total")
	if err != nil {
		return br, err
	}
	br.created = created1 - created0
	e.logf("burst %v: %d first requests, %d failed (%v), all served in %v, pool refilled in %v, %v containers created",
		args, c.burst, br.failures, br.first, br.allServed.Round(time.Millisecond), br.refilled.Round(time.Millisecond), br.created)
	return br, nil
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
