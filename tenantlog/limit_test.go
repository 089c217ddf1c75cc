package tenantlog

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(10, 20, t0)
	taken := 0
	for range 100 {
		if b.take(t0) {
			taken++
		}
	}
	if taken != 20 {
		t.Fatalf("burst: %d taken, want 20", taken)
	}
	steps := []struct {
		after time.Duration
		want  bool
	}{
		{50 * time.Millisecond, false}, // half a token
		{50 * time.Millisecond, true},  // one
		{0, false},
		{time.Hour, true}, // refills, capped at the burst
	}
	at := t0
	for i, s := range steps {
		at = at.Add(s.after)
		if got := b.take(at); got != s.want {
			t.Fatalf("step %d: take = %v, want %v", i, got, s.want)
		}
	}
	n := 0
	for b.take(at) {
		n++
	}
	if n != 19 {
		t.Fatalf("after a long pause %d more, want 19 (burst 20 minus the one taken)", n)
	}
	// A clock going backwards never adds tokens.
	if b.take(at.Add(-time.Hour)) {
		t.Fatal("token from a clock going backwards")
	}
}
