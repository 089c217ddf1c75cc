package main

import (
	"log/slog"
	"runtime"
	"runtime/debug"

	"github.com/wharfhq/wharf/config"
)

// gcSettings decides the node's garbage collector settings: the configured
// ones, unless the operator set Go's own variables, which always win. Zero
// means "leave it".
//
// Why not Go's default: the node's live heap is a few MB, so at GOGC=100 the
// collector runs many times a second under webhook load, and its cycles
// (and the wake-ups of idle threads they cause) cost about a seventh of the
// proxy's CPU per request (proxy's BenchmarkWharfFastPath, 100 against 400).
func gcSettings(cfg config.Config, getenv func(string) string) (percent int, limit int64) {
	if getenv("GOGC") == "" {
		percent = cfg.GCPercent
	}
	if getenv("GOMEMLIMIT") == "" {
		limit = int64(cfg.GCMemoryLimit)
	}
	return percent, limit
}

// applyGC runs once the node has started: a collection first, so the heap
// goal follows from the serving node's live heap, not from start-up's
// transient allocations (hashing the runtime image's context alone holds
// about 100 MB for a moment), which would otherwise be multiplied by the
// percentage.
func applyGC(cfg config.Config, getenv func(string) string, log *slog.Logger) {
	percent, limit := gcSettings(cfg, getenv)
	if percent > 0 {
		runtime.GC()
		debug.SetGCPercent(percent)
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	log.Debug("garbage collector", "gc_percent", percent, "memory_limit", limit)
}
