package integration

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfhq/wharf/buildnet"
	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/images"
	"github.com/wharfhq/wharf/integration/wharftest"
	"github.com/wharfhq/wharf/netpolicy"
)

// connProbe tries the connections its JSON argument lists, all at once, from
// inside a container and prints one JSON object: name -> {r, ms}, where r is
// "ok", an error code, "TIMEOUT", or for a CONNECT sent through a proxy the
// proxy's "HTTP <status>".
const connProbe = `
const net = require('net');
const checks = JSON.parse(process.argv[1]);
const out = {};
let left = checks.length;
for (const c of checks) {
  const started = Date.now();
  const s = net.connect({host: c.host, port: c.port});
  const done = (r) => {
    if (out[c.name]) return;
    out[c.name] = {r, ms: Date.now() - started};
    s.destroy();
    if (--left === 0) console.log(JSON.stringify(out));
  };
  s.setTimeout(3000, () => done('TIMEOUT'));
  s.on('error', (e) => done(e.code || String(e)));
  s.on('connect', () => {
    if (!c.connect) return done('ok');
    s.write('CONNECT ' + c.connect + ' HTTP/1.1\r\nHost: ' + c.connect + '\r\n\r\n');
    let buf = '';
    s.on('data', (d) => { buf += d; const m = buf.match(/^HTTP\/1\.1 (\d{3})/); if (m) done('HTTP ' + m[1]); });
  });
}
`

// tcpServer answers any connection with "hi" (a target for the probe).
const tcpServer = `require('net').createServer((s) => s.end('hi')).listen(8080, '0.0.0.0')`

type probeCheck struct {
	Name    string `json:"name"`
	Host    string `json:"host"`
	Port    int    `json:"port"`
	Connect string `json:"connect,omitempty"`
}

type probeResult struct {
	R  string
	MS int
}

// lab starts and removes the test's own containers.
type lab struct {
	t     *testing.T
	eng   *engine.Docker
	image string
	label string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	eng, err := engine.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img, err := images.Ensure(ctx, eng, images.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, eng: eng, image: img.Tag, label: "buildnet-test-" + randSuffix()}
	t.Cleanup(func() { l.removeAll(); eng.Close() })
	return l
}

// removeAll removes the lab's containers (before the network they are on
// goes, and again at the end of the test).
func (l *lab) removeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, _ := l.eng.ListContainers(ctx, map[string]string{engine.LabelNode: l.label})
	for _, c := range list {
		if err := l.eng.RemoveContainer(ctx, c.ID); err != nil {
			l.t.Errorf("cleanup: %v", err)
		}
	}
}

// run starts a hardened container of the runtime image running script on
// network ("" the engine's default bridge) and returns its id and address.
func (l *lab) run(network, script string, args ...string) (string, string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := l.eng.CreateContainer(ctx, engine.ContainerSpec{
		Name: l.label + "-" + randSuffix(), Image: l.image, Entrypoint: append([]string{images.NodePath, "-e", script}, args...),
		User: "10001:10001", Labels: map[string]string{engine.LabelNode: l.label}, Network: network,
		ReadOnlyRoot: true, CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges"},
		MemoryBytes: 128 << 20, PidsLimit: 64,
	})
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.eng.StartContainer(ctx, id); err != nil {
		l.t.Fatal(err)
	}
	info, err := l.eng.InspectContainer(ctx, id)
	if err != nil {
		l.t.Fatal(err)
	}
	return id, info.IP
}

// server starts a TCP server container on network and waits until the host
// reaches it (so a refusal from the probe is the network's doing).
func (l *lab) server(network string) string {
	l.t.Helper()
	_, ip := l.run(network, tcpServer)
	eventually(l.t, 20*time.Second, "the target container to listen", func() bool {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return ip
}

// probe runs connProbe on network with checks and returns its results.
func (l *lab) probe(network string, checks []probeCheck) map[string]probeResult {
	l.t.Helper()
	arg, _ := json.Marshal(checks)
	id, _ := l.run(network, connProbe, string(arg))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, err := l.eng.WaitContainer(ctx, id)
	stdout, stderr, _ := l.eng.ContainerLogs(ctx, id)
	if err != nil || code != 0 {
		l.t.Fatalf("probe: exit %d %v\n%s%s", code, err, stdout, stderr)
	}
	out := map[string]probeResult{}
	if err := json.Unmarshal(stdout, &out); err != nil {
		l.t.Fatalf("probe output %q: %v", stdout, err)
	}
	return out
}

// countingListener listens on addr until the test ends, counting (and
// closing) the connections it accepts, and returns its port.
func countingListener(t *testing.T, addr string) (int, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, &accepted
}

var proxyRe = regexp.MustCompile(`msg="build network ready".* proxy=(http://\S+)`)

// checkBuildNetwork asserts, from a container on the build network of a
// process whose log is logs, that the registry proxy lets through the npm
// registry and nothing else, and that nothing else is reachable directly:
// the host (a listener on all its addresses, via the build bridge's gateway
// and via Docker's default bridge's), link-local metadata, a container on
// another network (a private address) and a neighbour on the same bridge.
func checkBuildNetwork(t *testing.T, network string, logs func() string) {
	t.Helper()
	// A standalone builder sets its network up after it starts: wait for it.
	var m []string
	for deadline := time.Now().Add(time.Minute); m == nil; time.Sleep(100 * time.Millisecond) {
		if m = proxyRe.FindStringSubmatch(logs()); m == nil && time.Now().After(deadline) {
			t.Fatalf("no build network in the log:\n%s", logs())
		}
	}
	pu, err := url.Parse(m[1])
	if err != nil {
		t.Fatal(err)
	}
	proxyHost := pu.Hostname()
	proxyPort, _ := strconv.Atoi(pu.Port())
	l := newLab(t)
	defer l.removeAll()
	hostPort, hostHits := countingListener(t, "0.0.0.0:0")
	dockerGW := defaultBridgeGateway(t, l.eng)
	neighbour := l.server(network)
	private := l.server("")

	res := l.probe(network, []probeCheck{
		{Name: "proxy: registry", Host: proxyHost, Port: proxyPort, Connect: "registry.npmjs.org:443"},
		{Name: "proxy: host listener", Host: proxyHost, Port: proxyPort, Connect: "127.0.0.1:" + strconv.Itoa(hostPort)},
		{Name: "proxy: metadata", Host: proxyHost, Port: proxyPort, Connect: "169.254.169.254:80"},
		{Name: "proxy: private container", Host: proxyHost, Port: proxyPort, Connect: net.JoinHostPort(private, "8080")},
		{Name: "host via build gateway", Host: proxyHost, Port: hostPort},
		{Name: "host via docker0", Host: dockerGW, Port: hostPort},
		{Name: "metadata", Host: "169.254.169.254", Port: 80},
		{Name: "private container", Host: private, Port: 8080},
		{Name: "neighbour", Host: neighbour, Port: 8080},
	})
	t.Logf("from the build network: %+v", res)
	want := map[string]string{
		"proxy: registry": "HTTP 200", "proxy: host listener": "HTTP 403", "proxy: metadata": "HTTP 403",
		"proxy: private container": "HTTP 403",
		// The firewall's REJECT: refused at once, not left to time out.
		"host via build gateway": "EHOSTUNREACH",
	}
	for name, r := range res {
		if w, ok := want[name]; ok {
			if r.R != w {
				t.Errorf("%s: %s, want %s", name, r.R, w)
			}
			continue
		}
		if r.R == "ok" {
			t.Errorf("%s: reachable from the build network", name)
		}
	}
	if len(res) != 9 {
		t.Errorf("%d results for 9 checks", len(res))
	}
	for _, name := range []string{"metadata", "private container", "host via docker0"} {
		// Refused by the firewall at once, not dropped (a hanging npm).
		if r := res[name]; r.R != "EHOSTUNREACH" || r.MS > 2000 {
			t.Errorf("%s: %s after %d ms; want EHOSTUNREACH at once", name, r.R, r.MS)
		}
	}
	if n := hostHits.Load(); n != 0 {
		t.Errorf("the host listener accepted %d connections from the build network", n)
	}
}

// buildNetworkLeft lists what is left of id's build network: the network,
// its chains.
func buildNetworkLeft(t *testing.T, id string) []string {
	t.Helper()
	eng, err := engine.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var left []string
	if _, err := eng.InspectNetwork(context.Background(), buildnet.NetworkName(id)); err == nil {
		left = append(left, buildnet.NetworkName(id))
	}
	names := netpolicy.BuildNamesFor(id)
	for _, chain := range []string{names.Forward, names.Input} {
		if exec.Command("iptables", "-w", "-S", chain).Run() == nil {
			left = append(left, chain)
		}
	}
	return left
}

// Invariant: a node's module builds work (a real module from the npm
// registry) and run on a build network from which only the registry, through
// the node's proxy, can be reached; drain removes the network and its rules.
func TestBuildNetworkReachesOnlyTheRegistry(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	tok := createTenant(t, n, "acme")
	_, st := putFn(t, n, tok, "acme", "f", "?wait=180s", map[string]any{
		"code":         `const ms = require('ms'); module.exports = cb => cb(null, ms('1m'))`,
		"dependencies": map[string]string{"ms": "2.1.3"}})
	if st.Status != "ready" {
		t.Fatalf("PUT: %+v", st)
	}
	r := do(t, n, "GET", "/run/acme/f", "", nil)
	expect(t, r, http.StatusOK)
	if string(r.Body) != "60000" {
		t.Fatalf("function: %s", r.Body)
	}
	network := buildnet.NetworkName(n.NodeID)
	checkBuildNetwork(t, network, n.Stderr)

	if err := n.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if left := buildNetworkLeft(t, n.NodeID); len(left) != 0 {
		t.Fatalf("left after drain: %v", left)
	}
}

// Invariant: `wharf builder` runs its builds on a build network of its own,
// confined the same way, and removes it when it stops.
func TestBuilderBuildNetwork(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	uri := startStore(ctx, t)
	id := "tbn" + randSuffix()
	b, err := wharftest.RunBuilder(ctx, uri, id, "--builders", "1")
	wharftest.CleanupProc(t, b, id)
	if err != nil {
		t.Fatal(err)
	}
	network := buildnet.NetworkName(id)
	checkBuildNetwork(t, network, b.Stderr)
	if err := b.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if left := buildNetworkLeft(t, id); len(left) != 0 {
		t.Fatalf("left after the builder stopped: %v", left)
	}
}

// defaultBridgeGateway is the host's address on Docker's default bridge. A
// freshly started Docker 20.10 may list no gateway in the default network's
// IPAM config; the bridge interface itself (docker0) then has the address.
func defaultBridgeGateway(t *testing.T, eng engine.Engine) string {
	t.Helper()
	info, err := eng.InspectNetwork(context.Background(), "bridge")
	if err == nil {
		return info.Gateway
	}
	if info.Bridge == "" {
		t.Fatal(err)
	}
	ifc, ierr := net.InterfaceByName(info.Bridge)
	if ierr != nil {
		t.Fatalf("%v; and its bridge: %v", err, ierr)
	}
	addrs, ierr := ifc.Addrs()
	if ierr != nil {
		t.Fatalf("%v; and its bridge: %v", err, ierr)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Fatalf("%v; and its bridge %s has no IPv4 address", err, info.Bridge)
	return ""
}
