package netattach

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/engine/enginetest"
)

const (
	testNet    = "wharf-tenants"
	testBridge = "br-wharf-test"
	testNode   = "node-1"
)

var nodeLabels = map[string]string{engine.LabelNode: testNode, engine.LabelRole: "pool"}

// fakePlumber records what the engine asks of the plumbing; attachErr and
// detachErr make it fail.
type fakePlumber struct {
	mu        sync.Mutex
	links     []link
	detached  []string
	attachErr error
	detachErr error
}

func (p *fakePlumber) attach(l link) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.attachErr != nil {
		return p.attachErr
	}
	p.links = append(p.links, l)
	return nil
}

func (p *fakePlumber) detach(host string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.detached = append(p.detached, host)
	return p.detachErr
}

func (p *fakePlumber) snapshot() ([]link, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.links), slices.Clone(p.detached)
}

// subnetEngine is the fake with another subnet on its network, so that a
// test can fill it.
type subnetEngine struct {
	*enginetest.Fake
	subnet, gateway string
}

func (s subnetEngine) InspectNetwork(ctx context.Context, name string) (engine.NetworkInfo, error) {
	info, err := s.Fake.InspectNetwork(ctx, name)
	info.Subnet, info.Gateway = s.subnet, s.gateway
	return info, err
}

// exitOnStart is the fake whose containers exit as soon as they start.
type exitOnStart struct{ *enginetest.Fake }

func (e exitOnStart) StartContainer(ctx context.Context, id string) error {
	if err := e.Fake.StartContainer(ctx, id); err != nil {
		return err
	}
	e.Kill(id, 3)
	return nil
}

const testHostResolv = "# host\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.test\noptions edns0\n"

func newFake(t *testing.T) *enginetest.Fake {
	t.Helper()
	f := enginetest.New()
	if _, err := f.EnsureNetwork(t.Context(), engine.NetworkSpec{Name: testNet, BridgeName: testBridge}); err != nil {
		t.Fatal(err)
	}
	return f
}

func testConfig(t *testing.T) Config {
	t.Helper()
	hostResolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(hostResolv, []byte(testHostResolv), 0o644); err != nil {
		t.Fatal(err)
	}
	return Config{Network: testNet, Labels: nodeLabels, Dir: filepath.Join(t.TempDir(), "net"), HostResolv: hostResolv}
}

func newTestEngine(t *testing.T, eng engine.Engine) (*Engine, *fakePlumber, Config) {
	t.Helper()
	cfg, p := testConfig(t), &fakePlumber{}
	e, err := newEngine(t.Context(), eng, cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	return e, p, cfg
}

func tenantSpec(name string) engine.ContainerSpec {
	return engine.ContainerSpec{Name: name, Image: "wharf-runtime:test", Network: testNet, Labels: maps.Clone(nodeLabels)}
}

// specOf is the spec that reached the fake engine for container id.
func specOf(t *testing.T, f *enginetest.Fake, id string) engine.ContainerSpec {
	t.Helper()
	for _, c := range f.Live() {
		if c.Info.ID == id {
			return c.Spec
		}
	}
	t.Fatalf("container %s not in the engine", id)
	return engine.ContainerSpec{}
}

func TestCreateContainerOnNetwork(t *testing.T) {
	f := newFake(t)
	e, _, cfg := newTestEngine(t, f)
	ctx := t.Context()

	spec := tenantSpec("tenant-1")
	// Room behind the caller's mounts: an append that did not copy would write there.
	spec.Mounts = make([]engine.Mount, 1, 4)
	spec.Mounts[0] = engine.Mount{Source: "/srv/code", Target: "/code", ReadOnly: true}
	callerLabels, callerMounts := maps.Clone(spec.Labels), slices.Clone(spec.Mounts[:cap(spec.Mounts)])

	id, err := e.CreateContainer(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	got := specOf(t, f, id)
	if !got.NetworkDisabled || got.Network != "" {
		t.Errorf("spec reaching the engine: NetworkDisabled=%v Network=%q, want true and \"\"", got.NetworkDisabled, got.Network)
	}
	if got.Labels[LabelIP] != "10.99.128.0" {
		t.Errorf("label %s = %q, want 10.99.128.0 (the middle of 10.99.0.0/16)", LabelIP, got.Labels[LabelIP])
	}
	for k, v := range nodeLabels {
		if got.Labels[k] != v {
			t.Errorf("label %s = %q, want the caller's %q", k, got.Labels[k], v)
		}
	}
	resolv, hosts := filepath.Join(cfg.Dir, "resolv.conf"), filepath.Join(cfg.Dir, "hosts")
	wantMounts := []engine.Mount{
		{Source: "/srv/code", Target: "/code", ReadOnly: true},
		{Source: resolv, Target: "/etc/resolv.conf", ReadOnly: true},
		{Source: hosts, Target: "/etc/hosts", ReadOnly: true},
	}
	if !reflect.DeepEqual(got.Mounts, wantMounts) {
		t.Errorf("mounts reaching the engine %+v, want %+v", got.Mounts, wantMounts)
	}
	if got.Image != spec.Image || got.Name != spec.Name {
		t.Errorf("image/name changed: %q %q", got.Image, got.Name)
	}

	// The caller's spec is its own still.
	if spec.Network != testNet || spec.NetworkDisabled {
		t.Errorf("caller's spec changed: Network=%q NetworkDisabled=%v", spec.Network, spec.NetworkDisabled)
	}
	if !reflect.DeepEqual(spec.Labels, callerLabels) {
		t.Errorf("caller's labels changed: %v, was %v", spec.Labels, callerLabels)
	}
	if len(spec.Mounts) != 1 || !reflect.DeepEqual(spec.Mounts[:cap(spec.Mounts)], callerMounts) {
		t.Errorf("caller's mounts (or the array behind them) changed: %+v", spec.Mounts[:cap(spec.Mounts)])
	}

	for _, file := range []struct{ path, want string }{
		{resolv, "# Written by Wharf from the host's resolv.conf.\nnameserver 192.0.2.53\nsearch example.test\noptions edns0\n"},
		{hosts, hostsFile},
	} {
		b, err := os.ReadFile(file.path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != file.want {
			t.Errorf("%s =\n%s\nwant\n%s", file.path, b, file.want)
		}
		st, err := os.Stat(file.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644 (the container's user reads it)", file.path, st.Mode().Perm())
		}
	}
	if ents, _ := os.ReadDir(cfg.Dir); len(ents) != 2 {
		t.Errorf("%s holds %d entries, want resolv.conf and hosts only (no temporary files)", cfg.Dir, len(ents))
	}
	if e.Addresses() != 1 {
		t.Errorf("Addresses() = %d, want 1", e.Addresses())
	}
}

func TestCreateContainerNilLabels(t *testing.T) {
	f := newFake(t)
	e, _, _ := newTestEngine(t, f)
	id, err := e.CreateContainer(t.Context(), engine.ContainerSpec{Name: "bare", Network: testNet})
	if err != nil {
		t.Fatal(err)
	}
	if got := specOf(t, f, id).Labels[LabelIP]; got != "10.99.128.0" {
		t.Errorf("label %s = %q on a spec without labels", LabelIP, got)
	}
}

func TestOtherNetworkPassesThrough(t *testing.T) {
	f := newFake(t)
	e, p, _ := newTestEngine(t, f)
	ctx := t.Context()
	spec := engine.ContainerSpec{Name: "build-1", Image: "node:test", Network: "wharf-build",
		Labels: map[string]string{engine.LabelRole: "build"},
		Mounts: []engine.Mount{{Source: "/src", Target: "/src"}}}
	want := spec
	want.Labels, want.Mounts = maps.Clone(spec.Labels), slices.Clone(spec.Mounts)

	id, err := e.CreateContainer(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := specOf(t, f, id); !reflect.DeepEqual(got, want) {
		t.Errorf("spec of another network changed on its way:\n got %+v\nwant %+v", got, want)
	}
	if err := e.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	info, err := e.InspectContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := f.InspectContainer(ctx, id)
	if info.IP != raw.IP || info.IP == "" {
		t.Errorf("inspect IP %q, want the engine's own %q", info.IP, raw.IP)
	}
	if err := e.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	links, detached := p.snapshot()
	if len(links) != 0 || len(detached) != 0 {
		t.Errorf("a container of another network was plumbed: attach %v detach %v", links, detached)
	}
	if e.Addresses() != 0 {
		t.Errorf("Addresses() = %d, want 0", e.Addresses())
	}
}

func TestStartContainerAttaches(t *testing.T) {
	f := newFake(t)
	e, p, _ := newTestEngine(t, f)
	ctx := t.Context()
	// One after the other: the fake numbers pids by its count of containers.
	var ids []string
	for _, name := range []string{"t1", "t2"} {
		id := mustCreate(t, e, name)
		if err := e.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	id1, id2 := ids[0], ids[1]
	links, _ := p.snapshot()
	if len(links) != 2 {
		t.Fatalf("%d attaches, want 2", len(links))
	}
	for i, id := range []string{id1, id2} {
		raw, err := f.InspectContainer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if raw.Pid <= 0 {
			t.Fatalf("fake gave container %s no pid", id)
		}
		a := netip.MustParseAddr(specOf(t, f, id).Labels[LabelIP])
		want := link{Pid: raw.Pid, Host: vethName(id), Bridge: testBridge, Addr: netip.PrefixFrom(a, 16),
			Gateway: netip.MustParseAddr("10.99.0.1"), MAC: macFor(a)}
		if !reflect.DeepEqual(links[i], want) {
			t.Errorf("attach of %s:\n got %+v\nwant %+v", id, links[i], want)
		}
	}
	if links[0].Addr == links[1].Addr || links[0].Pid == links[1].Pid {
		t.Errorf("two containers plumbed alike: %+v %+v", links[0], links[1])
	}
}

func TestStartContainerAttachError(t *testing.T) {
	f := newFake(t)
	e, p, _ := newTestEngine(t, f)
	boom := errors.New("netlink: operation not permitted")
	p.attachErr = boom
	id := mustCreate(t, e, "t1")
	err := e.StartContainer(t.Context(), id)
	if !errors.Is(err, boom) {
		t.Fatalf("StartContainer = %v, want the attach error", err)
	}
	if !strings.Contains(err.Error(), testBridge) {
		t.Errorf("error %q does not name the bridge", err)
	}
	// The address stays the container's until it is removed.
	if e.Addresses() != 1 {
		t.Errorf("Addresses() = %d after a failed attach, want 1", e.Addresses())
	}
}

// A container that did not start, or stopped at once, is not plumbed.
func TestStartContainerNotRunning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		exits   bool   // the container exits as soon as it starts
		id      string // "" to start the created container
		wantErr func(error) bool
	}{
		{"exited before attach", true, "",
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "exit code 3") }},
		{"missing container", false, "no-such-container",
			func(err error) bool { return errors.Is(err, engine.ErrNotFound) }},
	} {
		f := newFake(t)
		var eng engine.Engine = f
		if tc.exits {
			eng = exitOnStart{f}
		}
		e, p, _ := newTestEngine(t, eng)
		id := mustCreate(t, e, "t1")
		if tc.id != "" {
			id = tc.id
		}
		if err := e.StartContainer(t.Context(), id); !tc.wantErr(err) {
			t.Errorf("%s: StartContainer = %v", tc.name, err)
		}
		if links, _ := p.snapshot(); len(links) != 0 {
			t.Errorf("%s: plumbed %+v", tc.name, links)
		}
	}
}

func TestInspectAndListReportAddress(t *testing.T) {
	f := newFake(t)
	e, _, _ := newTestEngine(t, f)
	ctx := t.Context()
	id := mustCreate(t, e, "t1")
	want := specOf(t, f, id).Labels[LabelIP]

	ipOf := func() (inspected, listed string) {
		t.Helper()
		info, err := e.InspectContainer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		list, err := e.ListContainers(ctx, nodeLabels)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != id {
			t.Fatalf("listed %+v, want %s only", list, id)
		}
		return info.IP, list[0].IP
	}
	if in, li := ipOf(); in != "" || li != "" {
		t.Errorf("created, not started: IP %q / %q, want none", in, li)
	}
	if err := e.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if raw, _ := f.InspectContainer(ctx, id); raw.IP != "" {
		t.Fatalf("the fake engine itself reports IP %q for a container with its network disabled", raw.IP)
	}
	if in, li := ipOf(); in != want || li != want {
		t.Errorf("running: IP %q / %q, want %q", in, li, want)
	}
	f.Kill(id, 0)
	if in, li := ipOf(); in != "" || li != "" {
		t.Errorf("stopped: IP %q / %q, want none", in, li)
	}
	if _, err := e.InspectContainer(ctx, "no-such-container"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("inspect of a missing container = %v, want ErrNotFound", err)
	}
}

func TestRemoveContainerReleases(t *testing.T) {
	f := newFake(t)
	e, p, _ := newTestEngine(t, f)
	ctx := t.Context()
	id1, id2 := mustCreate(t, e, "t1"), mustCreate(t, e, "t2")
	if e.Addresses() != 2 {
		t.Fatalf("Addresses() = %d, want 2", e.Addresses())
	}
	if err := e.RemoveContainer(ctx, id1); err != nil {
		t.Fatal(err)
	}
	if e.Addresses() != 1 {
		t.Errorf("Addresses() = %d after a remove, want 1", e.Addresses())
	}
	if _, detached := p.snapshot(); !slices.Equal(detached, []string{vethName(id1)}) {
		t.Errorf("detached %v, want [%s]", detached, vethName(id1))
	}
	// Removing it again is not an error and releases nothing more.
	if err := e.RemoveContainer(ctx, id1); err != nil {
		t.Fatal(err)
	}
	if _, detached := p.snapshot(); len(detached) != 1 || e.Addresses() != 1 {
		t.Errorf("a second remove: detached %v, %d addresses", detached, e.Addresses())
	}

	// A failed detach is reported, and the address is given back all the same.
	boom := errors.New("netlink: busy")
	p.detachErr = boom
	if err := e.RemoveContainer(ctx, id2); !errors.Is(err, boom) {
		t.Errorf("RemoveContainer with a failing detach = %v, want its error", err)
	}
	if e.Addresses() != 0 {
		t.Errorf("Addresses() = %d, want 0", e.Addresses())
	}
}

func TestCreateFailureReleases(t *testing.T) {
	f := newFake(t)
	e, _, _ := newTestEngine(t, f)
	boom := errors.New("engine: no space left")
	f.FailCreate = boom
	if _, err := e.CreateContainer(t.Context(), tenantSpec("t1")); !errors.Is(err, boom) {
		t.Fatalf("CreateContainer = %v, want the engine's error", err)
	}
	if e.Addresses() != 0 {
		t.Errorf("Addresses() = %d after a failed create, want 0", e.Addresses())
	}
	f.FailCreate = nil
	mustCreate(t, e, "t1")
	if e.Addresses() != 1 {
		t.Errorf("Addresses() = %d, want 1", e.Addresses())
	}
}

// newEngine learns the addresses of the node's containers: from the label of
// those it connected, from the engine of those the engine connected; a
// container of another node is none of its business.
func TestNewEngineLearnsAddresses(t *testing.T) {
	// A /24, so that the test can hand out every address.
	f := newFake(t)
	small := subnetEngine{Fake: f, subnet: "10.99.0.0/24", gateway: "10.99.0.1"}
	ctx := t.Context()

	labelled, err := f.CreateContainer(ctx, engine.ContainerSpec{Name: "old-labelled", NetworkDisabled: true,
		Labels: merge(nodeLabels, map[string]string{LabelIP: "10.99.0.128"})})
	if err != nil {
		t.Fatal(err)
	}
	byEngine, err := f.CreateContainer(ctx, engine.ContainerSpec{Name: "old-engine", Network: testNet, Labels: maps.Clone(nodeLabels)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.StartContainer(ctx, byEngine); err != nil {
		t.Fatal(err)
	}
	engineIP, _ := f.InspectContainer(ctx, byEngine)
	if !netip.MustParsePrefix("10.99.0.0/24").Contains(netip.MustParseAddr(engineIP.IP)) {
		t.Fatalf("the fake gave %q, outside the test's subnet", engineIP.IP)
	}
	// Outside the subnet (another network's address): not counted.
	if _, err := f.CreateContainer(ctx, engine.ContainerSpec{Name: "old-outside", NetworkDisabled: true,
		Labels: merge(nodeLabels, map[string]string{LabelIP: "172.30.0.9"})}); err != nil {
		t.Fatal(err)
	}

	e, p, _ := newTestEngine(t, small)
	if e.Addresses() != 2 {
		t.Fatalf("Addresses() = %d after start, want 2 (the labelled one and the engine's)", e.Addresses())
	}
	taken := map[string]string{"10.99.0.128": labelled, engineIP.IP: byEngine}
	// .2-.254 usable, two of them taken: 251 more, all distinct, none taken.
	for i := range 251 {
		id := mustCreate(t, e, fmt.Sprintf("new-%d", i))
		a := specOf(t, f, id).Labels[LabelIP]
		if owner, ok := taken[a]; ok {
			t.Fatalf("new container %d got %s, already %s's", i, a, owner)
		}
		taken[a] = id
	}
	if _, err := e.CreateContainer(ctx, tenantSpec("one-too-many")); err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("create on a full subnet = %v, want an exhaustion error", err)
	}
	// The labelled container is the engine's to release; the kernel cleans up its veth.
	if err := e.RemoveContainer(ctx, labelled); err != nil {
		t.Fatal(err)
	}
	if _, detached := p.snapshot(); !slices.Equal(detached, []string{vethName(labelled)}) {
		t.Errorf("detached %v, want the labelled container's %s", detached, vethName(labelled))
	}
	id := mustCreate(t, e, "after-remove")
	if a := specOf(t, f, id).Labels[LabelIP]; a != "10.99.0.128" {
		t.Errorf("after the labelled container went, a new one got %s, want its 10.99.0.128", a)
	}
	// The engine's container gives its address back too, and has no veth of the node's to remove.
	if err := e.RemoveContainer(ctx, byEngine); err != nil {
		t.Fatal(err)
	}
	if _, detached := p.snapshot(); len(detached) != 1 {
		t.Errorf("detached %v, want the labelled container's only", detached)
	}
	id = mustCreate(t, e, "after-engine-remove")
	if a := specOf(t, f, id).Labels[LabelIP]; a != engineIP.IP {
		t.Errorf("after the engine's container went, a new one got %s, want its %s", a, engineIP.IP)
	}
}

func TestNewEngineErrors(t *testing.T) {
	f := newFake(t)
	for _, tc := range []struct {
		name    string
		eng     engine.Engine
		cfg     func(*Config)
		wantErr string
	}{
		{"missing network", f, func(c *Config) { c.Network = "no-such-network" }, "not found"},
		{"ipv6 subnet", subnetEngine{f, "fd00:99::/64", "fd00:99::1"}, nil, "not an IPv4 prefix"},
		{"bad subnet", subnetEngine{f, "", "10.99.0.1"}, nil, "not an IPv4 prefix"},
		{"bad gateway", subnetEngine{f, "10.99.0.0/16", "gw"}, nil, "gateway"},
		{"unreadable host resolv.conf", f, func(c *Config) { c.HostResolv = t.TempDir() }, "host resolv.conf"},
		{"dir is a file", f, func(c *Config) { c.Dir = c.HostResolv }, "network dir"},
	} {
		cfg := testConfig(t)
		if tc.cfg != nil {
			tc.cfg(&cfg)
		}
		_, err := newEngine(t.Context(), tc.eng, cfg, &fakePlumber{})
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: newEngine = %v, want an error with %q", tc.name, err, tc.wantErr)
		}
	}
}

// A host without resolv.conf gets Docker's fallback resolvers, not an error.
func TestNewEngineNoHostResolv(t *testing.T) {
	cfg := testConfig(t)
	cfg.HostResolv = filepath.Join(t.TempDir(), "absent")
	if _, err := newEngine(t.Context(), newFake(t), cfg, &fakePlumber{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(cfg.Dir, "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(resolvConf(nil)) || !strings.Contains(string(b), "nameserver 8.8.8.8") {
		t.Errorf("resolv.conf without a host one:\n%s", b)
	}
}

func TestConcurrentCreateStart(t *testing.T) {
	f := newFake(t)
	e, p, _ := newTestEngine(t, f)
	ctx := t.Context()
	const n = 50
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id, err := e.CreateContainer(ctx, tenantSpec(fmt.Sprintf("t%d", i)))
			if err == nil {
				err = e.StartContainer(ctx, id)
			}
			ids[i], errs[i] = id, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	links, _ := p.snapshot()
	if len(links) != n {
		t.Fatalf("%d attaches, want %d", len(links), n)
	}
	// Each container plumbed once, at its own address, into its own process.
	owner := map[netip.Addr]string{}
	for _, id := range ids {
		owner[netip.MustParseAddr(specOf(t, f, id).Labels[LabelIP])] = id
	}
	if len(owner) != n || e.Addresses() != n {
		t.Fatalf("%d distinct addresses labelled, %d handed out; want %d", len(owner), e.Addresses(), n)
	}
	plumbed := map[netip.Addr]bool{}
	for _, l := range links {
		a := l.Addr.Addr()
		id, ok := owner[a]
		if !ok || plumbed[a] {
			t.Errorf("address %s plumbed twice or for no container", a)
			continue
		}
		plumbed[a] = true
		raw, err := f.InspectContainer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if l.Pid != raw.Pid || !slices.Equal(l.MAC, macFor(a)) {
			t.Errorf("container %s at %s plumbed with pid %d MAC %s, want %d %s", id, a, l.Pid, l.MAC, raw.Pid, macFor(a))
		}
	}
}

func mustCreate(t *testing.T, e *Engine, name string) string {
	t.Helper()
	id, err := e.CreateContainer(t.Context(), tenantSpec(name))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func merge(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}
