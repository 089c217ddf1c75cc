package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestIsolationDefaultsAndEnv(t *testing.T) {
	c, err := Load(CmdServe, nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Firewall || !c.Egress || c.SeccompProfile != "" || c.EgressDeny != "" || c.MaxResponse != 6<<20 ||
		c.TenantConcurrency != 64 || c.TenantQueue != 64 || c.TenantQueueTimeout != time.Second || c.HealthInterval != 5*time.Second {
		t.Fatalf("defaults: %+v", c.Isolation)
	}
	c, err = Load(CmdServe, []string{"--tenant-concurrency", "3"}, env(map[string]string{
		"WHARF_EGRESS": "false", "WHARF_FIREWALL": "false", "WHARF_EGRESS_DENY": "10.0.0.0/8",
		"WHARF_MAX_RESPONSE": "1m", "WHARF_TENANT_CONCURRENCY": "9",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Egress || c.Firewall || c.EgressDeny != "10.0.0.0/8" || c.MaxResponse != 1<<20 || c.TenantConcurrency != 3 {
		t.Fatalf("env and flags: %+v", c.Isolation)
	}
}

func TestIsolationErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--egress-deny", "10.0.0.1"}, "--egress-deny"},
		{[]string{"--egress-deny", "10.0.0.0/8,nope"}, "--egress-deny"},
		{[]string{"--tenant-concurrency", "0"}, "--tenant-concurrency"},
		{[]string{"--tenant-queue", "-1"}, "--tenant-queue"},
		{[]string{"--max-response", "10"}, "--max-response"},
		{[]string{"--health-interval", "-1s"}, "--health-interval"},
		{[]string{"--egress=maybe"}, "invalid boolean"},
		{[]string{"--container-log-size", "-1"}, "size like"},
	}
	for _, c := range cases {
		_, err := Load(CmdServe, c.args, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want it to mention %q", c.args, err, c.want)
		}
	}
}
