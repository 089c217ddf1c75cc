package handler

import (
	"testing"
	"time"
)

func TestExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	lim := Limits{IdleTimeout: 15 * time.Minute, MaxLifetime: 24 * time.Hour}
	cases := []struct {
		name   string
		c      candidate
		lim    Limits
		reason string
	}{
		{"fresh and busy", candidate{inflight: 2, lastUsed: now, since: now.Add(-time.Hour)}, lim, ""},
		{"idle long enough", candidate{lastUsed: now.Add(-16 * time.Minute), since: now.Add(-time.Hour)}, lim, ReasonIdle},
		{"idle exactly at the timeout", candidate{lastUsed: now.Add(-15 * time.Minute), since: now.Add(-time.Hour)}, lim, ReasonIdle},
		{"idle not long enough", candidate{lastUsed: now.Add(-14 * time.Minute), since: now.Add(-time.Hour)}, lim, ""},
		{"long unused but a request in flight", candidate{inflight: 1, lastUsed: now.Add(-time.Hour), since: now.Add(-time.Hour)}, lim, ""},
		{"past lifetime while busy retires", candidate{inflight: 3, lastUsed: now, since: now.Add(-25 * time.Hour)}, lim, ReasonLifetime},
		{"past lifetime and idle says lifetime", candidate{lastUsed: now.Add(-time.Hour), since: now.Add(-25 * time.Hour)}, lim, ReasonLifetime},
		{"no limits never expire", candidate{lastUsed: now.Add(-1000 * time.Hour), since: now.Add(-1000 * time.Hour)}, Limits{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reason, ok := expiry(c.c, now, c.lim)
			if reason != c.reason || ok != (c.reason != "") {
				t.Fatalf("expiry = %q,%v want %q", reason, ok, c.reason)
			}
		})
	}
}

func TestLRUIdle(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name  string
		cands []candidate
		want  int
		ok    bool
	}{
		{"none", nil, -1, false},
		{"all busy", []candidate{{inflight: 1}, {inflight: 2}}, -1, false},
		{"oldest idle wins", []candidate{
			{tenant: "a", lastUsed: now.Add(-time.Minute)},
			{tenant: "b", lastUsed: now.Add(-time.Hour)},
			{tenant: "c", lastUsed: now}}, 1, true},
		{"busy oldest is skipped", []candidate{
			{tenant: "a", lastUsed: now.Add(-time.Minute)},
			{tenant: "b", inflight: 1, lastUsed: now.Add(-time.Hour)}}, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := lruIdle(c.cands)
			if got != c.want || ok != c.ok {
				t.Fatalf("lruIdle = %d,%v want %d,%v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestAtCapacity(t *testing.T) {
	cases := []struct {
		assigned, max int
		want          bool
	}{{0, 0, false}, {100, 0, false}, {2, 3, false}, {3, 3, true}, {4, 3, true}}
	for _, c := range cases {
		if got := atCapacity(c.assigned, Limits{MaxContainers: c.max}); got != c.want {
			t.Fatalf("atCapacity(%d, %d) = %v", c.assigned, c.max, got)
		}
	}
}
