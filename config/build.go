package config

import (
	"flag"
	"net/url"
	"time"
)

// CmdBuilder names the flag set of `wharf builder`.
const CmdBuilder = "builder"

// Build configures module builds: the builder `wharf serve` runs in process
// and the one `wharf builder` runs alone.
type Build struct {
	NPMRegistry string
	Timeout     time.Duration
	Lease       time.Duration
	Attempts    int
	Memory      ByteSize
	CPUs        float64
	Pids        int64
	Tmpfs       ByteSize
	MaxClosure  ByteSize
	// Concurrency is how many builds run at once; for `wharf serve`, 0 runs
	// no builder in process (builders run elsewhere).
	Concurrency int
}

// buildFlags registers the build flags of serve and builder.
func buildFlags(fs *flag.FlagSet, cmd string, b *Build) {
	size := func(p *ByteSize, name string, def int64, usage string) { *p = ByteSize(def); fs.Var(p, name, usage) }
	fs.StringVar(&b.NPMRegistry, "npm-registry", "https://registry.npmjs.org/", "npm registry module builds install from")
	fs.DurationVar(&b.Timeout, "build-timeout", 5*time.Minute, "time limit of one module build")
	fs.DurationVar(&b.Lease, "build-lease", time.Minute, "a build's lease on its job; a dead builder's job is retried after it")
	fs.IntVar(&b.Attempts, "build-attempts", 3, "builds of a module tried before it fails for good (npm errors in the module itself fail at once)")
	size(&b.Memory, "build-memory", 1<<30, "memory limit of a build container")
	fs.Float64Var(&b.CPUs, "build-cpus", 1, "CPU quota of a build container")
	fs.Int64Var(&b.Pids, "build-pids", 256, "process limit of a build container")
	size(&b.Tmpfs, "build-tmpfs", 512<<20, "size of a build container's /tmp (npm's cache)")
	size(&b.MaxClosure, "max-closure", 200<<20, "largest module closure (its node_modules, unpacked)")
	def, usage := 1, "module builds run at once by this node (0: none, builders run elsewhere)"
	if cmd == CmdBuilder {
		def, usage = 2, "module builds run at once"
	}
	fs.IntVar(&b.Concurrency, "builders", def, usage)
}

// validateBuild checks what serve and builder are told about builds.
func (c Config) validateBuild(cmd string, bad func(string, ...any)) {
	switch cmd {
	case CmdBuilder:
		if c.MongoURI == "" {
			bad("--mongo-uri is required: a builder works on the cluster's shared store")
		}
		if c.NodeID != "" && !nodeIDRe.MatchString(c.NodeID) {
			bad("--node-id %q must match %s", c.NodeID, nodeIDRe)
		}
	case CmdServe:
	default:
		return
	}
	c.Build.validate(cmd, bad)
}

// validate checks the build flags.
func (b Build) validate(cmd string, bad func(string, ...any)) {
	if u, err := url.Parse(b.NPMRegistry); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("--npm-registry %q must be an http(s) URL", b.NPMRegistry)
	}
	if b.Timeout <= 0 {
		bad("--build-timeout must be positive")
	}
	if b.Lease < 3*time.Second {
		bad("--build-lease must be at least 3s")
	}
	if b.Attempts < 1 || b.Attempts > 20 {
		bad("--build-attempts %d must be between 1 and 20", b.Attempts)
	}
	if b.Memory < 64<<20 {
		bad("--build-memory must be at least 64m")
	}
	if b.CPUs <= 0 || b.CPUs > 64 {
		bad("--build-cpus %v must be above 0 and at most 64", b.CPUs)
	}
	if b.Pids < 16 {
		bad("--build-pids %d must be at least 16", b.Pids)
	}
	if b.Tmpfs < 16<<20 {
		bad("--build-tmpfs must be at least 16m")
	}
	if b.MaxClosure < 1<<20 {
		bad("--max-closure must be at least 1m")
	}
	lo := 0
	if cmd == CmdBuilder {
		lo = 1
	}
	if b.Concurrency < lo || b.Concurrency > 64 {
		bad("--builders %d must be between %d and 64", b.Concurrency, lo)
	}
}

// NanoCPUs is a build container's CPU quota in Docker's units.
func (b Build) NanoCPUs() int64 { return int64(b.CPUs * 1e9) }
