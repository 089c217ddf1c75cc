package modstore

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const max = 3
	const delay = 10 * time.Second
	// In these helpers every attempt so far is in the current round.
	running := func(attempt int, expires time.Duration) *LeaseState {
		return &LeaseState{Attempt: attempt, RoundAttempts: attempt, ExpiresAt: t0.Add(expires)}
	}
	failed := func(attempt int, ago time.Duration) *LeaseState {
		return &LeaseState{Attempt: attempt, RoundAttempts: attempt, ExpiresAt: t0.Add(time.Hour), Finished: true, FinishedAt: t0.Add(-ago), Failed: true}
	}
	for _, tc := range []struct {
		name    string
		latest  *LeaseState
		want    Action
		attempt int
	}{
		{"never claimed", nil, Build, 1},
		{"held", running(1, time.Minute), Wait, 0},
		{"held, expiring now", running(1, 0), Wait, 0},
		{"expired within the clock skew", running(1, -ClockSkew+time.Millisecond), Wait, 0},
		{"expired past the clock skew", running(1, -ClockSkew), Build, 2},
		{"expired, second attempt", running(2, -time.Minute), Build, 3},
		{"expired, budget spent", running(3, -time.Minute), GiveUp, 4},
		{"expired beyond the budget (a give-up that died)", running(4, -time.Minute), GiveUp, 5},
		{"transient failure, retry not due", failed(1, 9*time.Second), Wait, 0},
		{"transient failure, retry due", failed(1, 10*time.Second), Build, 2},
		{"transient failure, backoff grows with attempts", failed(2, 15*time.Second), Wait, 0},
		{"transient failure, second retry due", failed(2, 20*time.Second), Build, 3},
		{"transient failure, budget spent", failed(3, time.Minute), GiveUp, 4},
		{"finished with a result, job not marked done", &LeaseState{Attempt: 1, RoundAttempts: 1, ExpiresAt: t0.Add(time.Hour), Finished: true, FinishedAt: t0}, Build, 2},
		{"finished early, lease time left, still finalised", &LeaseState{Attempt: 2, RoundAttempts: 2, ExpiresAt: t0.Add(time.Hour), Finished: true, FinishedAt: t0.Add(-time.Hour)}, Build, 3},
		{"a finished give-up: the job was re-opened, a new round", &LeaseState{Attempt: 4, RoundAttempts: 4, Finished: true, FinishedAt: t0, GaveUp: true}, Build, 5},
		{"second round, first retry", &LeaseState{Attempt: 5, RoundAttempts: 1, Finished: true, FinishedAt: t0.Add(-time.Minute), Failed: true}, Build, 6},
		{"second round, budget spent", &LeaseState{Attempt: 7, RoundAttempts: 3, Finished: true, FinishedAt: t0.Add(-time.Minute), Failed: true}, GiveUp, 8},
		{"second round, its builder died", &LeaseState{Attempt: 6, RoundAttempts: 2, ExpiresAt: t0.Add(-time.Minute)}, Build, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, attempt := Decide(tc.latest, t0, max, delay)
			if got != tc.want || attempt != tc.attempt {
				t.Fatalf("Decide = %v, %d; want %v, %d", got, attempt, tc.want, tc.attempt)
			}
		})
	}
}

func TestLatestStateRounds(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	fin := &t0
	leases := []Lease{
		{Attempt: 1, FinishedAt: fin, Transient: true},
		{Attempt: 2, FinishedAt: fin, Transient: true},
		{Attempt: 3, FinishedAt: fin, GiveUp: true}, // round 1 closed
		{Attempt: 4, FinishedAt: fin, Transient: true},
		{Attempt: 5}, // running
	}
	st := latestState(leases)
	if st.Attempt != 5 || st.RoundAttempts != 2 || st.Finished || st.GaveUp {
		t.Fatalf("latestState = %+v", st)
	}
	st = latestState(leases[:3])
	if !st.GaveUp || st.RoundAttempts != 3 {
		t.Fatalf("latestState of a closed round = %+v", st)
	}
	if latestState(nil) != nil {
		t.Fatal("no leases must be nil")
	}
	// An unfinished give-up (its builder died) does not close the round.
	st = latestState([]Lease{{Attempt: 1, FinishedAt: fin, Transient: true}, {Attempt: 2, GiveUp: true}, {Attempt: 3}})
	if st.RoundAttempts != 3 {
		t.Fatalf("latestState = %+v", st)
	}
}
