package modstore

import "time"

// Action is what a builder should do about a queued job.
type Action int

const (
	// Wait: another builder holds the job, or a retry is not due yet.
	Wait Action = iota
	// Build: claim the next attempt and build.
	Build
	// GiveUp: the attempt budget is spent; claim the next attempt only to
	// record the module as failed with the last error.
	GiveUp
)

func (a Action) String() string {
	switch a {
	case Build:
		return "build"
	case GiveUp:
		return "give up"
	}
	return "wait"
}

// LeaseState is what Decide needs of a job's latest lease.
type LeaseState struct {
	Attempt    int
	ExpiresAt  time.Time
	Finished   bool
	FinishedAt time.Time
	// Failed is set on a finished attempt that ended in a transient failure
	// (the job stays queued). A finished attempt without it or GaveUp
	// recorded a final result before finishing.
	Failed bool
	// GaveUp is set on a finished give-up: the round failed for transient
	// reasons and the job was closed; it is claimed again only when a
	// request re-opened it (a new round).
	GaveUp bool
	// RoundAttempts counts the leases of the current round up to and
	// including this one (a round starts after a finished give-up).
	RoundAttempts int
}

// Decide is the lease logic, pure: given a job's latest lease (nil: never
// claimed) it says what a builder should do now and which attempt number to
// claim. Two builders deciding alike both try to insert the same lease _id,
// and the unique index lets exactly one of them win. maxAttempts is the
// budget of one round.
//
//   - no lease yet: build attempt 1;
//   - a lease running and not expired (plus ClockSkew): wait;
//   - a lease expired without finishing (its builder died or stalled): the
//     next attempt builds, or gives up when the round's budget is spent;
//   - a lease finished with a transient failure: the next attempt builds after
//     retryDelay × the round's attempts, or gives up when the budget is spent;
//   - a finished give-up (the job was re-opened since): a new round builds;
//   - a lease finished otherwise: its result is recorded, but the job was not
//     marked done (its builder died in between); the next attempt finds the
//     result and only marks the job done.
func Decide(latest *LeaseState, now time.Time, maxAttempts int, retryDelay time.Duration) (Action, int) {
	if latest == nil {
		return Build, 1
	}
	next := latest.Attempt + 1
	spent := latest.RoundAttempts >= maxAttempts
	switch {
	case !latest.Finished && now.Before(latest.ExpiresAt.Add(ClockSkew)):
		return Wait, 0
	case !latest.Finished:
		if spent {
			return GiveUp, next
		}
		return Build, next
	case latest.GaveUp:
		return Build, next
	case latest.Failed:
		if now.Before(latest.FinishedAt.Add(retryDelay * time.Duration(latest.RoundAttempts))) {
			return Wait, 0
		}
		if spent {
			return GiveUp, next
		}
		return Build, next
	}
	return Build, next
}
