package bench

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/wharfhq/wharf/node"
)

// machineInfo describes this machine and the code under test; a tool that
// cannot answer leaves its field empty rather than failing the run.
func machineInfo(ctx context.Context, repo string) Machine {
	out := func(name string, args ...string) string {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = repo
		b, err := cmd.Output()
		if err != nil {
			return ""
		}
		return trimLine(string(b))
	}
	load, _ := os.ReadFile("/proc/loadavg")
	m := Machine{
		Cores:     runtime.NumCPU(),
		MemoryMiB: node.MemTotal() >> 20,
		Load:      strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "),
		Go:        runtime.Version(),
		Node:      out("node", "--version"),
		Docker:    out("docker", "version", "--format", "{{.Server.Version}}"),
		Kernel:    out("uname", "-r"),
		Commit:    out("git", "rev-parse", "--short=12", "HEAD"),
		Date:      time.Now().UTC().Format(time.RFC3339),
	}
	if m.Commit != "" && out("git", "status", "--porcelain", "--", ".", ":!bench/results.json") != "" {
		m.Commit += "-dirty"
	}
	return m
}
