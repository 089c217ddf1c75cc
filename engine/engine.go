// Package engine is the narrow interface Wharf needs from a container engine,
// plus its Docker implementation. Pool, handler and image code depend on the
// interface only, so they unit-test with a fake and no Docker.
package engine

import (
	"context"
	"errors"
	"io"
	"time"
)

// Label keys every Wharf object carries.
const (
	LabelNode   = "wharf.node"   // id of the node that owns the object
	LabelRole   = "wharf.role"   // "pool", "build", "network", ...
	LabelImage  = "wharf.image"  // content hash of the runtime image
	LabelTenant = "wharf.tenant" // only set on containers created for a known tenant
)

// ErrNotFound is returned (wrapped) when a container, image or network does not exist.
var ErrNotFound = errors.New("engine: not found")

// Mount is a host directory bind-mounted into a container.
type Mount struct {
	Source   string // host path
	Target   string // path inside the container
	ReadOnly bool
}

// ContainerSpec is everything Wharf ever asks of a new container. It is a
// plain value: the pool and the module builder fill it, the engine applies it.
type ContainerSpec struct {
	Name       string
	Image      string
	Entrypoint []string // overrides the image's entrypoint when set
	Cmd        []string
	Env        []string
	User       string // "uid:gid"
	WorkingDir string
	Labels     map[string]string
	Network    string // network name; "" means the engine default, "none" means no network
	// NetworkDisabled leaves networking to Wharf: the engine gives the
	// container an empty network namespace (loopback only) and runs none of
	// its own network set-up (Docker's per-container libnetwork hook).
	NetworkDisabled bool

	Mounts       []Mount
	Tmpfs        map[string]string // target -> mount options, e.g. "size=64m,mode=1777"
	ReadOnlyRoot bool
	CapDrop      []string
	SecurityOpt  []string // e.g. "no-new-privileges", "seccomp=<json>"

	MemoryBytes int64 // hard limit; swap is set equal so there is no swap
	NanoCPUs    int64 // CPU quota in units of 1e-9 CPUs
	PidsLimit   int64
	NoFile      int64 // RLIMIT_NOFILE soft and hard; 0 keeps the engine default
	Runtime     string
	// Init runs the engine's init (tini) as PID 1: it reaps orphaned
	// processes, which would otherwise hold PIDs of the pids limit forever.
	Init bool

	// LogConfig bounds what the engine keeps of the container's output; the
	// zero value keeps the engine's default driver.
	LogConfig LogConfig
}

// LogConfig is a container's log driver with its options, e.g. json-file
// with max-size and max-file so that no output can fill the host's disk.
type LogConfig struct {
	Driver  string
	Options map[string]string
}

// ContainerInfo is what Wharf reads back about a container.
type ContainerInfo struct {
	ID        string
	Name      string
	Labels    map[string]string
	Running   bool
	ExitCode  int
	OOMKilled bool
	IP        string // address on the container's Wharf network ("" when none)
	Pid       int    // the container's first process on the host (0 when not running)
	Created   time.Time
}

// ContainerStats is a container's resource use at one moment.
type ContainerStats struct {
	Pids        int64 // processes and threads
	PidsLimit   int64 // 0 when unknown or unlimited
	MemoryBytes int64
	MemoryLimit int64
}

// NetworkSpec describes a bridge network Wharf owns.
type NetworkSpec struct {
	Name   string
	Labels map[string]string
	// Isolated disables traffic between containers on the bridge (icc=false).
	Isolated bool
	// Internal is Docker's --internal: no NAT, and Docker's rules drop what
	// containers send outside the bridge's subnet (the host's addresses
	// stay reachable: that is INPUT, which only a firewall closes).
	Internal bool
	// BridgeName names the host's bridge interface (at most 15 bytes), so
	// firewall rules can match it; "" lets the engine choose.
	BridgeName string
}

// NetworkInfo is what Wharf reads back about a bridge network.
type NetworkInfo struct {
	ID      string
	Subnet  string // CIDR, e.g. "172.18.0.0/16"
	Gateway string // the host's address on the bridge
	Bridge  string // the host's bridge interface
}

// ErrNetworkMismatch is returned (wrapped) by EnsureNetwork when a network of
// that name exists with other options than the spec asks for.
var ErrNetworkMismatch = errors.New("engine: network exists with different options")

// Event is a container lifecycle event (die, oom, destroy, ...).
type Event struct {
	ContainerID string
	Action      string
	Labels      map[string]string
	ExitCode    string
}

// Engine is the subset of a container engine Wharf uses.
type Engine interface {
	Ping(ctx context.Context) error

	CreateContainer(ctx context.Context, spec ContainerSpec) (id string, err error)
	StartContainer(ctx context.Context, id string) error
	InspectContainer(ctx context.Context, id string) (ContainerInfo, error)
	// WaitContainer blocks until the container stops and returns its exit code.
	WaitContainer(ctx context.Context, id string) (int, error)
	// RemoveContainer force-removes a container; removing a missing one is not an error.
	RemoveContainer(ctx context.Context, id string) error
	// ListContainers lists containers (running or not) carrying all the given labels.
	ListContainers(ctx context.Context, labels map[string]string) ([]ContainerInfo, error)
	// ContainerLogs returns the container's stdout and stderr, demultiplexed.
	ContainerLogs(ctx context.Context, id string) (stdout, stderr []byte, err error)
	// ContainerStats samples a container's resource use once, without waiting.
	ContainerStats(ctx context.Context, id string) (ContainerStats, error)
	// FollowLogs copies the container's output written since `since` (zero:
	// all of it) to stdout and stderr, demultiplexed, and keeps following it.
	// It returns nil once the container stopped and its output is drained,
	// ctx's error when ctx ends first.
	FollowLogs(ctx context.Context, id string, since time.Time, stdout, stderr io.Writer) error

	// EnsureNetwork creates the network if missing and returns its id; an
	// existing one that differs from spec is an ErrNetworkMismatch.
	EnsureNetwork(ctx context.Context, spec NetworkSpec) (id string, err error)
	// RemoveNetwork removes a network by name; a missing one is not an error.
	RemoveNetwork(ctx context.Context, name string) error
	// InspectNetwork returns a bridge network's subnet, gateway and interface.
	InspectNetwork(ctx context.Context, name string) (NetworkInfo, error)

	ImageExists(ctx context.Context, ref string) (bool, error)
	// BuildImage builds an image from a tar build context containing a Dockerfile at its root.
	BuildImage(ctx context.Context, tag string, buildContext io.Reader, labels map[string]string) error
	// PruneImages removes the untagged images carrying all the labels that
	// were created before the given time and that no container uses; it
	// returns how many it removed.
	PruneImages(ctx context.Context, labels map[string]string, createdBefore time.Time) (int, error)

	// Events streams container events for containers carrying all the given labels
	// until ctx ends. The error channel yields one error if the stream breaks.
	Events(ctx context.Context, labels map[string]string) (<-chan Event, <-chan error)

	Close() error
}
