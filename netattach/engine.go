package netattach

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/wharfhq/wharf/engine"
)

// LabelIP is the label of the address a container was given on the bridge.
const LabelIP = "wharf.ip"

// Where a container finds the files the engine writes only for containers it connects.
const (
	ResolvTarget = "/etc/resolv.conf"
	HostsTarget  = "/etc/hosts"
)

// hostsFile names localhost, as the engine's own /etc/hosts does; a tenant
// container has no other name worth resolving locally.
const hostsFile = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

// Engine is an engine.Engine that connects the containers created on one
// network itself. Containers on other networks (module builds) pass through
// untouched, as does everything else.
type Engine struct {
	engine.Engine
	network string // the engine network whose bridge this one plumbs
	bridge  string
	gateway netip.Addr
	bits    int
	resolv  string // host path of the containers' resolv.conf
	hosts   string // host path of their /etc/hosts
	plumb   plumber

	mu    sync.Mutex
	alloc *allocator
	byID  map[string]netip.Addr
	// byEngine holds the addresses of the containers found at start that
	// the engine connected: given back when they go, never plumbed.
	byEngine map[string]netip.Addr
}

// Config names the network to take over and where to keep its files.
type Config struct {
	Network string            // the engine's network (created by the node)
	Labels  map[string]string // the labels of the containers that may hold addresses on it
	Dir     string            // a directory for resolv.conf
	// HostResolv is the host's resolv.conf; default /etc/resolv.conf.
	HostResolv string
}

// Supported says why this process cannot attach containers itself (nil when it can).
func Supported() error { return supported() }

// New takes over the addressing of cfg.Network: it reads the subnet, writes
// the containers' resolv.conf and learns the addresses of the containers that
// already exist, whether this package or the engine connected them.
func New(ctx context.Context, eng engine.Engine, cfg Config) (*Engine, error) {
	return newEngine(ctx, eng, cfg, netlinkPlumber{})
}

func newEngine(ctx context.Context, eng engine.Engine, cfg Config, p plumber) (*Engine, error) {
	info, err := eng.InspectNetwork(ctx, cfg.Network)
	if err != nil {
		return nil, err
	}
	prefix, err := netip.ParsePrefix(info.Subnet)
	if err != nil || !prefix.Addr().Is4() {
		return nil, fmt.Errorf("network %s: subnet %q is not an IPv4 prefix", cfg.Network, info.Subnet)
	}
	gw, err := netip.ParseAddr(info.Gateway)
	if err != nil {
		return nil, fmt.Errorf("network %s: gateway %q: %w", cfg.Network, info.Gateway, err)
	}
	e := &Engine{
		Engine: eng, network: cfg.Network, bridge: info.Bridge, gateway: gw, bits: prefix.Bits(), plumb: p,
		alloc: newAllocator(prefix, gw), byID: map[string]netip.Addr{}, byEngine: map[string]netip.Addr{},
	}
	hostResolv := cfg.HostResolv
	if hostResolv == "" {
		hostResolv = "/etc/resolv.conf"
	}
	host, err := os.ReadFile(hostResolv)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("host resolv.conf: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("network dir: %w", err)
	}
	e.resolv = filepath.Join(cfg.Dir, "resolv.conf")
	if err := writeFileAtomic(e.resolv, resolvConf(host), 0o644); err != nil {
		return nil, fmt.Errorf("containers' resolv.conf: %w", err)
	}
	e.hosts = filepath.Join(cfg.Dir, "hosts")
	if err := writeFileAtomic(e.hosts, []byte(hostsFile), 0o644); err != nil {
		return nil, fmt.Errorf("containers' hosts file: %w", err)
	}
	existing, err := eng.ListContainers(ctx, cfg.Labels)
	if err != nil {
		return nil, err
	}
	for _, c := range existing {
		if a, ok := labelAddr(c); ok {
			e.alloc.mark(a, c.ID)
			e.byID[c.ID] = a
		} else if a, err := netip.ParseAddr(c.IP); err == nil {
			e.alloc.mark(a, c.ID) // connected by the engine (an older Wharf)
			e.byEngine[c.ID] = a
		}
	}
	return e, nil
}

func labelAddr(c engine.ContainerInfo) (netip.Addr, bool) {
	a, err := netip.ParseAddr(c.Labels[LabelIP])
	return a, err == nil
}

// CreateContainer creates a container of the taken-over network with its
// network disabled, its address in a label and the node's resolv.conf and hosts.
func (e *Engine) CreateContainer(ctx context.Context, s engine.ContainerSpec) (string, error) {
	if s.Network != e.network {
		return e.Engine.CreateContainer(ctx, s)
	}
	e.mu.Lock()
	a, err := e.alloc.reserve(s.Name)
	e.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", s.Name, err)
	}
	s.Network, s.NetworkDisabled = "", true
	s.Labels = maps.Clone(s.Labels)
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels[LabelIP] = a.String()
	s.Mounts = append(slices.Clip(s.Mounts),
		engine.Mount{Source: e.resolv, Target: ResolvTarget, ReadOnly: true},
		engine.Mount{Source: e.hosts, Target: HostsTarget, ReadOnly: true})
	id, err := e.Engine.CreateContainer(ctx, s)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.alloc.release(a)
		return id, err
	}
	e.byID[id] = a
	return id, nil
}

// StartContainer starts the container, then connects it when it is one of
// the network's: it runs from its start, but it has no address until this
// returns, and whoever waits for it to answer waits for this.
func (e *Engine) StartContainer(ctx context.Context, id string) error {
	if err := e.Engine.StartContainer(ctx, id); err != nil {
		return err
	}
	e.mu.Lock()
	a, ok := e.byID[id]
	e.mu.Unlock()
	if !ok {
		return nil
	}
	info, err := e.Engine.InspectContainer(ctx, id)
	if err != nil {
		return err
	}
	if !info.Running || info.Pid <= 0 {
		return fmt.Errorf("container %s stopped before it was connected (exit code %d)", info.Name, info.ExitCode)
	}
	l := link{Pid: info.Pid, Host: vethName(id), Bridge: e.bridge, Addr: netip.PrefixFrom(a, e.bits),
		Gateway: e.gateway, MAC: macFor(a)}
	if err := e.plumb.attach(l); err != nil {
		return fmt.Errorf("connect container %s to %s: %w", info.Name, e.bridge, err)
	}
	return nil
}

// InspectContainer reports the address of a container this package connected.
func (e *Engine) InspectContainer(ctx context.Context, id string) (engine.ContainerInfo, error) {
	info, err := e.Engine.InspectContainer(ctx, id)
	if err == nil {
		withAddr(&info)
	}
	return info, err
}

// ListContainers reports the addresses of the containers this package connected.
func (e *Engine) ListContainers(ctx context.Context, labels map[string]string) ([]engine.ContainerInfo, error) {
	list, err := e.Engine.ListContainers(ctx, labels)
	for i := range list {
		withAddr(&list[i])
	}
	return list, err
}

// withAddr fills the address of a running container from its label: the
// engine does not know it.
func withAddr(info *engine.ContainerInfo) {
	if a, ok := labelAddr(*info); ok && info.IP == "" && info.Running {
		info.IP = a.String()
	}
}

// RemoveContainer removes the container and gives its address back. The
// kernel removes the veth with the container's namespace; a host end left
// by an attach that failed half-way goes here too.
func (e *Engine) RemoveContainer(ctx context.Context, id string) error {
	if err := e.Engine.RemoveContainer(ctx, id); err != nil {
		return err
	}
	e.mu.Lock()
	a, ok := e.byID[id]
	if ok {
		delete(e.byID, id)
		e.alloc.release(a)
	}
	if a, found := e.byEngine[id]; found {
		delete(e.byEngine, id)
		e.alloc.release(a)
	}
	e.mu.Unlock()
	if ok {
		if err := e.plumb.detach(vethName(id)); err != nil {
			return fmt.Errorf("remove veth of container %s: %w", id, err)
		}
	}
	return nil
}

// Addresses is the number of addresses handed out (for tests and metrics).
func (e *Engine) Addresses() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.alloc.used)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
