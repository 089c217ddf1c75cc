package pool

import "time"

// toCreate decides how many containers to start creating now: enough to bring
// ready plus in-flight creations up to the target, plus one per waiter the
// ready ones cannot satisfy, never more than maxParallel in flight.
func toCreate(ready, creating, waiting, target, maxParallel int) int {
	want := target + waiting - ready - creating
	if room := maxParallel - creating; want > room {
		want = room
	}
	if want < 0 {
		return 0
	}
	return want
}

// target is how many ready containers the pool aims at: its minimum plus the
// claims seen within the TTL (recent demand), capped at its maximum. A burst
// of cold starts grows the pool; once the burst ages out it shrinks back.
func target(minSize, maxSize, recentTakes int) int {
	if maxSize <= minSize {
		return minSize
	}
	return min(minSize+recentTakes, maxSize)
}

// excess is how many ready containers to remove to come back to target.
func excess(ready, tgt int) int {
	return max(ready-tgt, 0)
}

// pruneBefore drops timestamps older than cutoff from a sorted slice.
func pruneBefore(ts []int64, cutoff int64) []int64 {
	i := 0
	for i < len(ts) && ts[i] < cutoff {
		i++
	}
	return ts[i:]
}

// refillHold is how long to wait before replacing taken containers. Creating
// one costs the machine most of a CPU for about a second (the engine, runc,
// Node's start), and a take is a tenant's first request, which is about to
// run on that same CPU: while the pool still holds at least half its target
// and nobody waits, the replacement starts once the cold start had time to
// finish (hold after the latest take). A pool below half, or a waiter, gets
// its containers at once: a burst is never slowed down.
func refillHold(ready, waiting, target int, sinceTake, hold time.Duration) time.Duration {
	if hold <= 0 || waiting > 0 || ready == 0 || 2*ready < target || sinceTake >= hold {
		return 0
	}
	return hold - sinceTake
}
