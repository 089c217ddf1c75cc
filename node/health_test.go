package node

import (
	"testing"

	"github.com/wharfhq/wharf/pool"
)

func TestPoolHealth(t *testing.T) {
	cases := []struct {
		name string
		st   pool.Stats
		min  int
		ok   bool
	}{
		{"full", pool.Stats{Ready: 4}, 4, true},
		{"drained by a burst, refilling", pool.Stats{Ready: 0, Creating: 4}, 4, true},
		{"below minimum, nothing under way", pool.Stats{Ready: 1}, 4, false},
		{"engine failing", pool.Stats{Ready: 4, ConsecutiveFailures: 3}, 4, false},
		{"one failure is a blip", pool.Stats{Ready: 2, Creating: 2, ConsecutiveFailures: 1}, 4, true},
		{"zero minimum by choice", pool.Stats{}, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := poolHealth(c.st, c.min); (err == nil) != c.ok {
				t.Fatalf("poolHealth = %v, want ok=%v", err, c.ok)
			}
		})
	}
}
