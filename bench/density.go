package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wharfhq/wharf/node"
)

// memUse is one container's memory, read from its cgroup and its main process.
type memUse struct {
	Usage   int64 // cgroup memory usage (page cache included)
	Stats   int64 // usage less inactive file pages: what `docker stats` shows
	Cgroup  int64 // the cgroup's rss: anonymous memory charged to it
	VmRSS   int64 // the node process's resident set, shared file pages (the node binary) included
	RssAnon int64 // the node process's private anonymous memory
}

// containerMemory reads a running container's memory use.
func (e *env) containerMemory(ctx context.Context, id string) (memUse, error) {
	ins, err := e.eng.Client().ContainerInspect(ctx, id)
	if err != nil {
		return memUse{}, err
	}
	if ins.State == nil || ins.State.Pid == 0 {
		return memUse{}, fmt.Errorf("container %s is not running", id)
	}
	pid := strconv.Itoa(ins.State.Pid)
	dir, v1, err := memoryCgroup(pid)
	if err != nil {
		return memUse{}, err
	}
	var m memUse
	usageFile, statRSS, statInactive := "memory.current", "anon", "inactive_file"
	if v1 {
		usageFile, statRSS, statInactive = "memory.usage_in_bytes", "total_rss", "total_inactive_file"
	}
	b, err := os.ReadFile(filepath.Join(dir, usageFile))
	if err != nil {
		return m, err
	}
	if m.Usage, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
		return m, fmt.Errorf("%s: %w", usageFile, err)
	}
	stat, err := keyValues(filepath.Join(dir, "memory.stat"), 1)
	if err != nil {
		return m, err
	}
	m.Cgroup, m.Stats = stat[statRSS], m.Usage-stat[statInactive]
	status, err := keyValues("/proc/"+pid+"/status", 1024) // kB
	if err != nil {
		return m, err
	}
	m.VmRSS, m.RssAnon = status["VmRSS:"], status["RssAnon:"]
	return m, nil
}

// memoryCgroup finds the memory cgroup directory of a host process: v1's
// memory hierarchy or the unified v2 one.
func memoryCgroup(pid string) (dir string, v1 bool, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return "", false, err
	}
	unified := ""
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return filepath.Join("/sys/fs/cgroup/memory", parts[2]), true, nil
			}
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = filepath.Join("/sys/fs/cgroup", parts[2])
		}
	}
	if unified == "" {
		return "", false, fmt.Errorf("no memory cgroup for process %s", pid)
	}
	return unified, false, nil
}

// keyValues reads "key value" lines, multiplying each value by unit.
func keyValues(path string, unit int64) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 {
			if v, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				out[fields[0]] = v * unit
			}
		}
	}
	return out, sc.Err()
}

// density measures idle tenant containers (each served its first request,
// then left idle) against an idle bare Node server with the same limits, and
// derives how many idle tenants this node holds.
func (e *env) density(ctx context.Context, n *wnode) ([]Figure, error) {
	c := e.counts()
	var ids []string
	for j := 0; j < c.density; j++ {
		name := fmt.Sprintf("idle-%d", j)
		if err := n.tenantWith(name, fnCode, nil); err != nil {
			return nil, err
		}
		_, body, err := timeGet(n.URL + "/run/" + name + "/f")
		if err != nil {
			return nil, err
		}
		var out struct{ Host string }
		if err := json.Unmarshal(body, &out); err != nil || out.Host == "" {
			return nil, fmt.Errorf("idle tenant answered %q", body)
		}
		ids = append(ids, out.Host)
	}
	bareID, bareURL, err := e.startBare(ctx, true)
	defer e.removeBare(bareID)
	if err != nil {
		return nil, err
	}
	if _, _, err := timeGet(bareURL); err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second) // idle: past the request, timers and GC settled
	var use []memUse
	for _, id := range ids {
		m, err := e.containerMemory(ctx, id)
		if err != nil {
			return nil, err
		}
		use = append(use, m)
	}
	bare, err := e.containerMemory(ctx, bareID)
	if err != nil {
		return nil, err
	}
	med := func(f func(memUse) int64) float64 {
		v := make([]float64, len(use))
		for i, u := range use {
			v[i] = mib(f(u))
		}
		return median(v)
	}
	const bareName = "idle bare server"
	fig := func(name string, f func(memUse) int64, t *Target) Figure {
		return newFigure("density", "idle tenant, "+name+" (median)", "MiB", med(f), ptr(mib(f(bare))), bareName, t)
	}
	stats := med(func(u memUse) int64 { return u.Stats })
	ram := node.MemTotal()
	byLimit := e.cfg.EffectiveMaxContainers(ram)
	byUse := 0.0
	if stats > 0 {
		byUse = mib(ram) * 0.8 / stats
	}
	limits := newFigure("density", "idle tenants one node admits at the default limits", "tenants", float64(byLimit), nil, "", nil)
	limits.Note = fmt.Sprintf("--max-containers 0: 80%% of %d MiB RAM / %d MiB --container-memory, less --pool-max %d",
		ram>>20, int64(e.cfg.ContainerMemory)>>20, e.cfg.PoolMax)
	return []Figure{
		fig("docker stats memory", func(u memUse) int64 { return u.Stats }, atMost(30)),
		fig("cgroup usage with page cache", func(u memUse) int64 { return u.Usage }, nil),
		fig("cgroup rss", func(u memUse) int64 { return u.Cgroup }, nil),
		fig("node VmRSS, shared pages too", func(u memUse) int64 { return u.VmRSS }, nil),
		fig("node RssAnon", func(u memUse) int64 { return u.RssAnon }, nil),
		limits,
		newFigure("density", "idle tenants 80% of RAM holds at the measured docker stats memory", "tenants", math.Floor(byUse), nil, "", nil),
	}, nil
}
