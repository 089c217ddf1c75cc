package pool

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/wharfhq/wharf/engine"
)

// Limits are the per-container resource limits.
type Limits struct {
	MemoryBytes int64
	NanoCPUs    int64
	PidsLimit   int64
	NoFile      int64
	TmpfsBytes  int64
	// LogBytes and LogFiles bound the engine's copy of a container's output
	// (json-file max-size and max-file): a flood of console output rotates
	// instead of filling the disk. Zero takes the default.
	LogBytes int64
	LogFiles int
	// LogRate is the console lines per second the runner writes (bursts of
	// twice that); 0 keeps the runner's default.
	LogRate int
}

// DefaultLimits are safe for a small node: 128 MiB, half a CPU, 64 processes.
var DefaultLimits = Limits{
	MemoryBytes: 128 << 20,
	NanoCPUs:    500_000_000,
	PidsLimit:   64,
	NoFile:      1024,
	TmpfsBytes:  16 << 20,
	LogBytes:    1 << 20,
	LogFiles:    2,
}

// Paths inside every runtime container.
const (
	AppMount     = "/app"
	ModulesMount = "/modules"
	RunnerPort   = 8080
	RunnerUser   = "10001:10001"
	ShmBytes     = 1 << 20
)

// hostAppDir is the host directory bind-mounted read-only at /app. It sits one
// level below the container's own directory so bookkeeping files (the owner
// record) live beside it, out of the container's sight.
func hostAppDir(root, name string) string { return filepath.Join(root, name, "app") }

// containerDir is the host directory holding everything of one container.
func containerDir(root, name string) string { return filepath.Join(root, name) }

// LabelSpec carries a hash of the settings a pooled container was created
// with, so a restart adopts only containers matching the current ones: a new
// seccomp profile or lower limits must not wait for old containers to die.
const LabelSpec = "wharf.spec"

// specHash hashes what a spec asks of the engine, less what differs between
// two containers of one pool (name, labels, the app directory's path).
func specHash(s engine.ContainerSpec) string {
	s.Name, s.Labels = "", nil
	mounts := make([]engine.Mount, len(s.Mounts))
	for i, m := range s.Mounts {
		if m.Target == AppMount {
			m.Source = ""
		}
		mounts[i] = m
	}
	s.Mounts = mounts
	b, _ := json.Marshal(s) // a struct of plain values always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Spec returns the hardened container spec of a pooled runtime container.
// Every pooled container is created before its tenant is known, so nothing
// tenant-specific may appear here.
func Spec(cfg Config, name string) engine.ContainerSpec {
	s := spec(cfg, name)
	s.Labels[LabelSpec] = specHash(s)
	return s
}

func spec(cfg Config, name string) engine.ContainerSpec {
	l := cfg.Limits
	sec := []string{"no-new-privileges"}
	if cfg.SeccompProfile != "" {
		sec = append(sec, "seccomp="+cfg.SeccompProfile)
	}
	return engine.ContainerSpec{
		Name:  name,
		Image: cfg.Image,
		Env: []string{
			fmt.Sprintf("WHARF_PORT=%d", RunnerPort),
			"WHARF_APP_DIR=" + AppMount,
			fmt.Sprintf("WHARF_LOG_RATE=%d", logRate(l)),
		},
		User: RunnerUser,
		Labels: map[string]string{
			engine.LabelNode:  cfg.NodeID,
			engine.LabelRole:  RolePool,
			engine.LabelImage: cfg.ImageHash,
		},
		Network: cfg.Network,
		Mounts: []engine.Mount{
			{Source: hostAppDir(cfg.Root, name), Target: AppMount, ReadOnly: true},
			{Source: cfg.ModulesDir, Target: ModulesMount, ReadOnly: true},
		},
		Tmpfs: map[string]string{
			"/tmp": fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d,mode=1777", l.TmpfsBytes),
			// Replaces Docker's 64 MiB /dev/shm: node never uses it, and it
			// would be a second, larger place to fill.
			"/dev/shm": fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d,mode=1777", ShmBytes),
		},
		ReadOnlyRoot: true,
		CapDrop:      []string{"ALL"},
		SecurityOpt:  sec,
		MemoryBytes:  l.MemoryBytes,
		NanoCPUs:     l.NanoCPUs,
		PidsLimit:    l.PidsLimit,
		NoFile:       l.NoFile,
		Runtime:      cfg.Runtime,
		// No engine init (tini): with it as PID 1 on Docker 20.10, part of the
		// runner's output never reached the engine's log follow (tenant logs
		// lost in ~2 of 5 runs of the CLI test; 0 of 4 without). Orphans are
		// bounded by the pids limit and the watchdog replaces a saturated
		// container, so reaping is not needed for containment.
		Init:      false,
		LogConfig: logConfig(l),
	}
}

// DefaultLogRate is the runner's console lines per second when none is set.
const DefaultLogRate = 100

func logRate(l Limits) int {
	if l.LogRate <= 0 {
		return DefaultLogRate
	}
	return l.LogRate
}

// logConfig is the json-file driver with rotation: Wharf follows the output
// live (tenant logs), so the engine only keeps a small rotating buffer.
func logConfig(l Limits) engine.LogConfig {
	size, files := l.LogBytes, l.LogFiles
	if size <= 0 {
		size = DefaultLimits.LogBytes
	}
	if files <= 0 {
		files = DefaultLimits.LogFiles
	}
	return engine.LogConfig{Driver: "json-file", Options: map[string]string{
		"max-size": strconv.FormatInt(size, 10),
		"max-file": strconv.Itoa(files),
	}}
}
