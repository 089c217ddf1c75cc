package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"time"
)

// lgResult is what bench/loadgen prints.
type lgResult struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Non2xx     int     `json:"non_2xx"`
	RPS        float64 `json:"rps"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	FirstError string  `json:"first_error"`
	// StolenShare is the share of the machine's CPU time (every CPU) the
	// hypervisor took while the run lasted; set by load, not by loadgen.
	StolenShare float64 `json:"-"`
}

// load runs the load generator (its own process) against url.
func (e *env) load(ctx context.Context, url, headers string, conns int, d time.Duration) (lgResult, error) {
	cmd := exec.CommandContext(ctx, e.loadgen, "-url", url, "-c", strconv.Itoa(conns), "-d", d.String(), "-H", headers)
	st0, t0 := stolen(), time.Now()
	out, err := cmd.Output()
	st, wall := stolen()-st0, time.Since(t0)
	if err != nil {
		return lgResult{}, fmt.Errorf("loadgen %s: %w", url, err)
	}
	var r lgResult
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("loadgen %s: %w: %s", url, err, out)
	}
	r.StolenShare = float64(st) / float64(wall*time.Duration(runtime.NumCPU()))
	if r.Errors > 0 || r.Non2xx > 0 || r.Requests == 0 {
		return r, fmt.Errorf("loadgen %s: %d requests, %d errors, %d non-2xx (%s)", url, r.Requests, r.Errors, r.Non2xx, r.FirstError)
	}
	return r, nil
}
