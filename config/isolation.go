package config

import (
	"flag"
	"strings"
	"time"

	"github.com/wharfhq/wharf/netpolicy"
)

// Isolation is the configuration of tenant isolation and per-tenant limits
// (SECURITY.md explains each layer).
type Isolation struct {
	SeccompProfile string // "": Wharf's own; "engine-default"; or a JSON file
	Firewall       bool
	Egress         bool
	EgressDeny     string // comma-separated CIDR prefixes
	HealthInterval time.Duration

	MaxResponse        ByteSize
	TenantConcurrency  int
	TenantQueue        int
	TenantQueueTimeout time.Duration
}

// OptionalSize is a size flag that also accepts 0 (off).
type OptionalSize int64

func (o *OptionalSize) String() string { b := ByteSize(*o); return b.String() }

func (o *OptionalSize) Set(s string) error {
	if strings.TrimSpace(s) == "0" {
		*o = 0
		return nil
	}
	var b ByteSize
	if err := b.Set(s); err != nil {
		return err
	}
	*o = OptionalSize(b)
	return nil
}

// SeccompEngineDefault selects the engine's default seccomp profile.
const SeccompEngineDefault = "engine-default"

func isolationFlags(fs *flag.FlagSet, c *Isolation) {
	fs.StringVar(&c.SeccompProfile, "seccomp-profile", "",
		`seccomp profile of tenant containers: empty for Wharf's own, "`+SeccompEngineDefault+`" for the engine's, or a JSON file`)
	fs.BoolVar(&c.Firewall, "firewall", true,
		"install iptables rules confining tenant containers to this node's bridge and module builds to the registry proxy (needs root); disable only where another firewall does the same")
	fs.BoolVar(&c.Egress, "egress", true,
		"let tenant containers open outbound connections (never to the host, other tenants or link-local addresses)")
	fs.StringVar(&c.EgressDeny, "egress-deny", "",
		"comma-separated CIDR prefixes tenant containers may not reach even with egress, e.g. 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16")
	fs.DurationVar(&c.HealthInterval, "health-interval", 5*time.Second,
		"how often tenant containers are checked for being held at their pids limit; 0 disables")
	c.MaxResponse = 6 << 20
	fs.Var(&c.MaxResponse, "max-response", "largest response body a function may return")
	fs.IntVar(&c.TenantConcurrency, "tenant-concurrency", 64, "requests of one tenant running at once on this node")
	fs.IntVar(&c.TenantQueue, "tenant-queue", 64, "requests of one tenant waiting for a running slot; beyond it, 429")
	fs.DurationVar(&c.TenantQueueTimeout, "tenant-queue-timeout", time.Second, "how long a request waits for a running slot before 429")
}

func (c Isolation) validate(bad func(format string, args ...any)) {
	if _, err := netpolicy.ParseDeny(c.EgressDeny); err != nil {
		bad("--egress-deny: %v", err)
	}
	if c.HealthInterval < 0 {
		bad("--health-interval must not be negative")
	}
	if c.MaxResponse < 1024 {
		bad("--max-response must be at least 1k")
	}
	if c.TenantConcurrency < 1 || c.TenantConcurrency > 100000 {
		bad("--tenant-concurrency %d must be between 1 and 100000", c.TenantConcurrency)
	}
	if c.TenantQueue < 0 || c.TenantQueue > 100000 {
		bad("--tenant-queue %d must be between 0 and 100000", c.TenantQueue)
	}
	if c.TenantQueueTimeout < 0 {
		bad("--tenant-queue-timeout must not be negative")
	}
}
