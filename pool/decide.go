package pool

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
