package main

import (
	"testing"

	"github.com/wharfhq/wharf/config"
)

func TestGCSettings(t *testing.T) {
	cfg := config.Config{GCPercent: 400, GCMemoryLimit: 1 << 30}
	cases := []struct {
		name           string
		env            map[string]string
		percent, limit int64
	}{
		{"configured", nil, 400, 1 << 30},
		{"GOGC wins", map[string]string{"GOGC": "100"}, 0, 1 << 30},
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "2GiB"}, 400, 0},
		{"both", map[string]string{"GOGC": "off", "GOMEMLIMIT": "2GiB"}, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, l := gcSettings(cfg, func(k string) string { return c.env[k] })
			if int64(p) != c.percent || l != c.limit {
				t.Fatalf("got %d %d, want %d %d", p, l, c.percent, c.limit)
			}
		})
	}
}
