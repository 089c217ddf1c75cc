package bench

import (
	"testing"
	"time"
)

func TestStealOf(t *testing.T) {
	cases := map[string]time.Duration{
		"cpu  100 0 50 1000 3 0 2 7 0 0": 70 * time.Millisecond,
		"cpu  100 0 50 1000 3 0 2 0 0 0": 0,
		"cpu0 100 0 50 1000 3 0 2 7 0 0": 0, // a single CPU's line, not the sum
		"cpu  100 0 50":                  0, // an old kernel without the field
		"cpu  1 2 3 4 5 6 7 x":           0,
	}
	for line, want := range cases {
		if got := stealOf(line); got != want {
			t.Errorf("stealOf(%q) = %v, want %v", line, got, want)
		}
	}
}
