package pool

import "testing"

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
