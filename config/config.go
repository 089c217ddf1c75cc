// Package config is Wharf's one typed configuration, read once at start from
// flags, each of which also has a WHARF_* environment variable.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"time"

	units "github.com/docker/go-units"
)

// Config is everything a Wharf process can be told.
type Config struct {
	// Node
	Listen          string
	DataDir         string
	NodeID          string
	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string

	// Store
	MongoURI    string
	StoreListen string // `wharf store` and the embedded store's listener
	SecretsKey  string
	AdminToken  string

	// Containers
	Image            string // "" builds the FROM-scratch runtime image
	PoolSize         int
	PoolMax          int
	PoolTTL          time.Duration
	PoolRefillHold   time.Duration
	FastPath         bool
	PoolParallel     int
	MaxColdWaiters   int
	MaxContainers    int // 0: derived from memory
	IdleTimeout      time.Duration
	MaxLifetime      time.Duration
	ContainerMemory  ByteSize
	ContainerCPUs    float64
	ContainerPids    int64
	ContainerNoFile  int64
	ContainerTmpfs   ByteSize
	ContainerReady   time.Duration
	ContainerRuntime string
	ContainerNetwork string // ContainerNetworkAuto, ContainerNetworkWharf or ContainerNetworkEngine

	// Requests
	ClaimTimeout    time.Duration
	FunctionTimeout time.Duration
	MaxTimeout      time.Duration
	MaxBody         ByteSize
	MaxCode         ByteSize

	// Observability
	MetricsTenantLabel bool
	DebugListen        string

	// Go runtime of the node
	GCPercent     int      // the collector's GOGC (a GOGC variable wins)
	GCMemoryLimit ByteSize // soft limit of the node's Go memory, 0: none (a GOMEMLIMIT variable wins)

	ConfigFile string
	Isolation  // isolation.go
	// Modules (serve and builder)
	Build Build
	// Management API and tenant logs
	APITimeout        time.Duration // bound of a management request (log streams excepted)
	ContainerLogSize  ByteSize      // json-file max-size of a container's output
	ContainerLogFiles int           // json-file max-file
	LogHistoryLines   int           // recent log lines kept in the store per tenant
	LogHistoryAge     time.Duration // older lines are removed
	LogRate           int           // log lines per second a tenant may write on one node
	LogFollowDelay    time.Duration // how long after a claim the node starts reading the container's output
}

// ByteSize is a size flag accepting "128m", "1g", "4096".
type ByteSize int64

func (b *ByteSize) String() string { return units.BytesSize(float64(*b)) }

func (b *ByteSize) Set(s string) error {
	n, err := units.RAMInBytes(s)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a size like 128m or 1g", s)
	}
	*b = ByteSize(n)
	return nil
}

// Command names the flag sets.
const (
	CmdServe = "serve"
	CmdStore = "store"
)

// EnvName is the environment variable of a flag: listen -> WHARF_LISTEN.
func EnvName(flagName string) string {
	return "WHARF_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// FlagSet registers cmd's flags on a new FlagSet bound to c.
func FlagSet(cmd string, c *Config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("wharf "+cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	str := func(p *string, name, def, usage string) { fs.StringVar(p, name, def, usage) }
	dur := func(p *time.Duration, name string, def time.Duration, usage string) {
		fs.DurationVar(p, name, def, usage)
	}
	size := func(p *ByteSize, name string, def int64, usage string) { *p = ByteSize(def); fs.Var(p, name, usage) }

	str(&c.ConfigFile, "config", "", "YAML file of settings named like the flags (flags and WHARF_* variables win)")
	str(&c.DataDir, "data-dir", "./wharf-data", "directory for the embedded store, node id, keys and container files")
	str(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "auto", "json, text, or auto (text on a terminal)")
	switch cmd {
	case CmdStore:
		str(&c.StoreListen, "listen", "127.0.0.1:27017", "address the MongoDB-wire store listens on")
	case CmdServe:
		str(&c.Listen, "listen", "127.0.0.1:8080", "address of the HTTP API and webhooks")
		str(&c.NodeID, "node-id", "", "this node's id (labels, names); default: generated once into the data dir")
		dur(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long SIGTERM waits for in-flight requests")
		str(&c.MongoURI, "mongo-uri", "", "MongoDB URI shared by a cluster; empty runs the embedded store under --data-dir")
		str(&c.StoreListen, "store-listen", "127.0.0.1:0", "listener of the embedded store (when --mongo-uri is empty)")
		str(&c.SecretsKey, "secrets-key", "", "key sealing function secrets (64 hex chars); default: generated into the data dir")
		str(&c.AdminToken, "admin-token", "", "admin API token; empty: generate one on first start and print it once")
		str(&c.Image, "image", "", "runtime image to run; empty builds the FROM-scratch image from this host's node")
		fs.IntVar(&c.PoolSize, "pool-size", 4, "pre-warmed containers kept ready (the pool's minimum)")
		fs.IntVar(&c.PoolMax, "pool-max", 16, "pre-warmed containers at most while cold starts are frequent; <= --pool-size keeps the pool fixed")
		dur(&c.PoolTTL, "pool-ttl", 2*time.Minute, "how long a cold start counts as demand that grows the pool")
		dur(&c.PoolRefillHold, "pool-refill-hold", 250*time.Millisecond, "wait this long after a cold start before replacing its container, while the pool is at least half full (the cold start keeps the CPU); 0: at once")
		fs.IntVar(&c.PoolParallel, "pool-parallel", 4, "containers created at once while refilling or serving a burst")
		fs.IntVar(&c.MaxColdWaiters, "max-cold-waiters", 128, "cold starts that may wait for a container at once; beyond: 503")
		fs.IntVar(&c.MaxContainers, "max-containers", 0, "tenant containers on this node; 0 derives it from memory (80% of RAM / --container-memory)")
		dur(&c.IdleTimeout, "idle-timeout", 15*time.Minute, "a tenant idle this long loses its container (0: never)")
		dur(&c.MaxLifetime, "max-lifetime", 24*time.Hour, "a container retires after this long and is replaced on the next request (0: never)")
		str(&c.DebugListen, "debug-listen", "", "address of a pprof debug listener (keep it on loopback); empty: none")
		fs.BoolVar(&c.FastPath, "http-fast-path", true, "serve plain HTTP/1.1 webhook requests (/run, /api/run) with Wharf's lean connection loop; everything else, and false, uses net/http")
		fs.IntVar(&c.GCPercent, "gc-percent", 400, "the node's Go garbage collector target (GOGC): its live heap is a few MB, so at Go's 100 the collector runs many times a second under load (a GOGC variable wins)")
		size(&c.GCMemoryLimit, "gc-memory-limit", 1<<30, "soft limit of the node's Go memory: nearing it the collector runs as often as needed, whatever --gc-percent (a GOMEMLIMIT variable wins)")
		fs.BoolVar(&c.MetricsTenantLabel, "metrics-tenant-label", false, "label request metrics with the tenant (small installations only: one series per tenant)")
		size(&c.ContainerMemory, "container-memory", 128<<20, "memory limit per container (no swap)")
		fs.Float64Var(&c.ContainerCPUs, "container-cpus", 0.5, "CPU quota per container, in CPUs")
		fs.Int64Var(&c.ContainerPids, "container-pids", 64, "process limit per container")
		fs.Int64Var(&c.ContainerNoFile, "container-nofile", 1024, "open files limit per container")
		size(&c.ContainerTmpfs, "container-tmpfs", 16<<20, "size of each container's /tmp")
		dur(&c.ContainerReady, "container-ready-timeout", 20*time.Second, "how long a new container may take to answer")
		str(&c.ContainerRuntime, "container-runtime", "", "OCI runtime for tenant containers (e.g. runsc); empty: engine default")
		str(&c.ContainerNetwork, "container-network", ContainerNetworkAuto, "who connects tenant containers to the node's bridge: wharf (veth and address set by the node itself, about a third less CPU per new container; needs root), engine (Docker's network stack), or auto (wharf when running as root)")
		dur(&c.ClaimTimeout, "claim-timeout", 30*time.Second, "how long a cold request waits for a container before 503 (a burst beyond the pool waits for containers being created)")
		dur(&c.FunctionTimeout, "function-timeout", 30*time.Second, "default function timeout")
		dur(&c.MaxTimeout, "max-function-timeout", 5*time.Minute, "largest timeout a function may set")
		size(&c.MaxBody, "max-body", 6<<20, "largest request body a function accepts")
		size(&c.MaxCode, "max-code", 1<<20, "largest function code accepted")
		dur(&c.APITimeout, "api-timeout", 30*time.Second, "how long a management API request may take (log streams excepted)")
		size(&c.ContainerLogSize, "container-log-size", 1<<20, "output the engine keeps per container log file (rotated)")
		fs.IntVar(&c.ContainerLogFiles, "container-log-files", 2, "rotated log files the engine keeps per container")
		fs.IntVar(&c.LogHistoryLines, "log-history-lines", 1000, "recent function log lines kept in the store per tenant")
		dur(&c.LogHistoryAge, "log-history-age", 7*24*time.Hour, "function log lines older than this are removed from the store")
		fs.IntVar(&c.LogRate, "log-rate", 100, "function log lines per second a tenant may write on one node (bursts of 2x)")
		dur(&c.LogFollowDelay, "log-follow-delay", 250*time.Millisecond, "how long after a tenant claims a container the node starts reading its output (nothing is lost: the engine keeps it; the first request gets the CPU)")
		isolationFlags(fs, &c.Isolation)
		buildFlags(fs, cmd, &c.Build)
	case CmdBuilder:
		str(&c.MongoURI, "mongo-uri", "", "MongoDB URI of the cluster's store (required)")
		str(&c.NodeID, "node-id", "", "this builder's id (leases, container labels); default: generated once into the data dir")
		str(&c.Image, "image", "", "runtime image to build in; empty builds the FROM-scratch image from this host's node")
		fs.BoolVar(&c.Firewall, "firewall", true,
			"install iptables rules confining build containers to the registry proxy (needs root); disable only where another firewall does the same")
		buildFlags(fs, cmd, &c.Build)
	}
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " [$" + EnvName(f.Name) + "]" })
	return fs
}

// Load reads cmd's configuration: defaults, then the optional --config file,
// then WHARF_* variables, then flags; each later source wins.
func Load(cmd string, args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := FlagSet(cmd, &c, out)
	if path := configFileArg(args, getenv); path != "" {
		if err := applyFile(fs, path); err != nil {
			return c, err
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(EnvName(f.Name)); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.Validate(cmd)
}

var nodeIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Validate checks c for cmd and says exactly what is wrong.
// Values of --container-network.
const (
	ContainerNetworkAuto   = "auto"
	ContainerNetworkWharf  = "wharf"
	ContainerNetworkEngine = "engine"
)

func (c Config) Validate(cmd string) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.DataDir == "" {
		bad("--data-dir must not be empty")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("--log-level %q must be debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text", "auto":
	default:
		bad("--log-format %q must be json, text or auto", c.LogFormat)
	}
	if _, _, err := net.SplitHostPort(c.StoreListen); err != nil && cmd != CmdBuilder {
		bad("store listen address %q: %v", c.StoreListen, err)
	}
	c.validateBuild(cmd, bad)
	if cmd == CmdServe {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("--listen %q: %v", c.Listen, err)
		}
		switch c.ContainerNetwork {
		case ContainerNetworkAuto, ContainerNetworkWharf, ContainerNetworkEngine:
		default:
			bad("--container-network %q must be auto, wharf or engine", c.ContainerNetwork)
		}
		if c.NodeID != "" && !nodeIDRe.MatchString(c.NodeID) {
			bad("--node-id %q must match %s", c.NodeID, nodeIDRe)
		}
		if c.PoolSize < 0 || c.PoolSize > 1000 {
			bad("--pool-size %d must be between 0 and 1000", c.PoolSize)
		}
		if c.PoolMax < 0 || c.PoolMax > 1000 {
			bad("--pool-max %d must be between 0 and 1000", c.PoolMax)
		}
		if c.GCPercent < 25 || c.GCPercent > 10_000 {
			bad("--gc-percent %d must be between 25 and 10000", c.GCPercent)
		}
		if c.GCMemoryLimit < 64<<20 {
			bad("--gc-memory-limit must be at least 64m")
		}
		if c.MaxColdWaiters < 1 {
			bad("--max-cold-waiters %d must be at least 1", c.MaxColdWaiters)
		}
		if c.MaxContainers < 0 {
			bad("--max-containers %d must not be negative", c.MaxContainers)
		}
		if c.IdleTimeout < 0 || c.MaxLifetime < 0 {
			bad("--idle-timeout and --max-lifetime must not be negative")
		}
		if c.PoolParallel < 1 || c.PoolParallel > 64 {
			bad("--pool-parallel %d must be between 1 and 64", c.PoolParallel)
		}
		if c.ContainerMemory < 16<<20 {
			bad("--container-memory must be at least 16m")
		}
		if c.ContainerCPUs <= 0 || c.ContainerCPUs > 64 {
			bad("--container-cpus %v must be above 0 and at most 64", c.ContainerCPUs)
		}
		if c.ContainerPids < 8 {
			bad("--container-pids %d must be at least 8", c.ContainerPids)
		}
		if c.ContainerLogFiles < 1 || c.ContainerLogFiles > 100 {
			bad("--container-log-files %d must be between 1 and 100", c.ContainerLogFiles)
		}
		if c.ContainerLogSize < 64<<10 {
			bad("--container-log-size must be at least 64k")
		}
		if c.LogHistoryLines < 0 || c.LogHistoryLines > 100_000 {
			bad("--log-history-lines %d must be between 0 and 100000", c.LogHistoryLines)
		}
		if c.LogFollowDelay < 0 || c.LogFollowDelay > 5*time.Second {
			bad("--log-follow-delay %v must be between 0 and 5s", c.LogFollowDelay)
		}
		if c.LogRate < 1 || c.LogRate > 100_000 {
			bad("--log-rate %d must be between 1 and 100000", c.LogRate)
		}
		if c.APITimeout <= 0 {
			bad("--api-timeout must be positive")
		}
		if c.LogHistoryAge <= 0 {
			bad("--log-history-age must be positive")
		}
		if c.ContainerNoFile < 64 {
			bad("--container-nofile %d must be at least 64", c.ContainerNoFile)
		}
		for name, d := range map[string]time.Duration{"--shutdown-timeout": c.ShutdownTimeout, "--claim-timeout": c.ClaimTimeout, "--pool-ttl": c.PoolTTL,
			"--function-timeout": c.FunctionTimeout, "--max-function-timeout": c.MaxTimeout, "--container-ready-timeout": c.ContainerReady} {
			if d <= 0 {
				bad("%s must be positive", name)
			}
		}
		if c.PoolRefillHold < 0 || c.PoolRefillHold > 10*time.Second {
			bad("--pool-refill-hold %v must be between 0 and 10s", c.PoolRefillHold)
		}
		if c.FunctionTimeout > c.MaxTimeout {
			bad("--function-timeout %v exceeds --max-function-timeout %v", c.FunctionTimeout, c.MaxTimeout)
		}
		if c.AdminToken != "" && len(c.AdminToken) < 16 {
			bad("--admin-token must be at least 16 characters")
		}
		c.Isolation.validate(bad)
	}
	if len(problems) > 0 {
		return errors.New("invalid configuration: " + strings.Join(problems, "; "))
	}
	return nil
}

// FunctionTimeoutMS is the default function timeout in milliseconds.
func (c Config) FunctionTimeoutMS() int { return int(c.FunctionTimeout / time.Millisecond) }

// MaxTimeoutMS is the largest function timeout in milliseconds.
func (c Config) MaxTimeoutMS() int { return int(c.MaxTimeout / time.Millisecond) }

// NanoCPUs is the CPU quota in Docker's units.
func (c Config) NanoCPUs() int64 { return int64(c.ContainerCPUs * 1e9) }

// EffectiveMaxContainers is --max-containers, or when 0, what fits in 80% of
// memTotal at --container-memory each, less the largest pool; at least 1.
func (c Config) EffectiveMaxContainers(memTotal int64) int {
	if c.MaxContainers > 0 {
		return c.MaxContainers
	}
	if c.ContainerMemory <= 0 || memTotal <= 0 {
		return 1
	}
	n := int(memTotal*8/10/int64(c.ContainerMemory)) - max(c.PoolSize, c.PoolMax)
	return max(n, 1)
}
