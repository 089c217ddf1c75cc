package pool

import (
	"testing"
	"time"
)

func TestToCreate(t *testing.T) {
	cases := []struct {
		name                                           string
		ready, creating, waiting, target, maxPar, want int
	}{
		{"empty pool fills up to parallel bound", 0, 0, 0, 4, 2, 2},
		{"full pool creates nothing", 4, 0, 0, 4, 2, 0},
		{"in-flight creations count", 2, 2, 0, 4, 4, 0},
		{"partly full", 3, 0, 0, 4, 2, 1},
		{"waiters beyond ready add demand", 0, 1, 3, 2, 8, 4},
		{"parallel bound caps waiter demand", 0, 2, 10, 2, 2, 0},
		{"over target never negative", 6, 1, 0, 4, 2, 0},
		{"zero target with waiter", 0, 0, 1, 0, 2, 1},
		{"zero target idle", 0, 0, 0, 0, 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := toCreate(c.ready, c.creating, c.waiting, c.target, c.maxPar); got != c.want {
				t.Fatalf("toCreate(%d,%d,%d,%d,%d) = %d, want %d", c.ready, c.creating, c.waiting, c.target, c.maxPar, got, c.want)
			}
		})
	}
}

func TestTarget(t *testing.T) {
	cases := []struct {
		name                  string
		min, max, takes, want int
	}{
		{"fixed pool ignores demand", 4, 4, 50, 4},
		{"max below min means fixed", 4, 2, 50, 4},
		{"idle adaptive pool sits at min", 4, 16, 0, 4},
		{"burst grows it", 4, 16, 5, 9},
		{"capped at max", 4, 16, 100, 16},
		{"zero min grows from nothing", 0, 8, 3, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := target(c.min, c.max, c.takes); got != c.want {
				t.Fatalf("target(%d,%d,%d) = %d, want %d", c.min, c.max, c.takes, got, c.want)
			}
		})
	}
	if excess(10, 4) != 6 || excess(3, 4) != 0 {
		t.Fatal("excess")
	}
	if got := pruneBefore([]int64{1, 2, 5, 9}, 5); len(got) != 2 || got[0] != 5 {
		t.Fatalf("pruneBefore = %v", got)
	}
	if got := pruneBefore(nil, 5); len(got) != 0 {
		t.Fatalf("pruneBefore(nil) = %v", got)
	}
}

func TestRefillHold(t *testing.T) {
	const h = 200 * time.Millisecond
	never := time.Duration(1<<63 - 1)
	cases := []struct {
		name                   string
		ready, waiting, target int
		sinceTake, hold, want  time.Duration
	}{
		{"just taken, pool more than half full: wait out the cold start", 3, 0, 4, 10 * time.Millisecond, h, 190 * time.Millisecond},
		{"exactly half full still holds", 2, 0, 4, 0, h, h},
		{"hold over: create", 3, 0, 4, h, h, 0},
		{"no take within the TTL", 4, 0, 4, never, h, 0},
		{"below half: at once", 1, 0, 4, 0, h, 0},
		{"empty: at once", 0, 0, 4, 0, h, 0},
		{"a waiter: at once", 3, 1, 4, 0, h, 0},
		{"hold disabled", 3, 0, 4, 0, 0, 0},
		{"pool of one, just taken: empty, at once", 0, 0, 1, 0, h, 0},
		{"adaptive target grew: judged against it", 4, 0, 12, 0, h, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := refillHold(c.ready, c.waiting, c.target, c.sinceTake, c.hold); got != c.want {
				t.Fatalf("refillHold(%d,%d,%d,%v,%v) = %v, want %v", c.ready, c.waiting, c.target, c.sinceTake, c.hold, got, c.want)
			}
		})
	}
}
