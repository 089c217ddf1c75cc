package netpolicy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/images"
)

// probeServer answers GET /connect?host=H&port=P with the outcome of a TCP
// connection from inside the container: {"ok":true} or {"code":"EHOSTUNREACH"}.
const probeServer = `
const http = require('http'), net = require('net');
http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  const s = net.connect({host: u.searchParams.get('host'), port: Number(u.searchParams.get('port'))});
  const done = (r) => { s.destroy(); res.end(JSON.stringify(r)); };
  s.setTimeout(1500, () => done({code: 'TIMEOUT'}));
  s.on('connect', () => done({ok: true}));
  s.on('error', (e) => done({code: e.code}));
}).listen(8080, '0.0.0.0');
`

type lab struct {
	t    *testing.T
	eng  *engine.Docker
	node string
	net  string
}

// newLab creates a bridge named as Wharf names it, WITHOUT icc=false, so the
// firewall is the only thing between two containers on it; everything is
// removed when the test ends.
func newLab(t *testing.T, names Names, node string) *lab {
	t.Helper()
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Fatalf("these tests need a Docker engine: %v %s", err, out)
	}
	eng, err := engine.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, eng: eng, node: node, net: "wharf-" + node}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := eng.ListContainers(ctx, map[string]string{engine.LabelNode: node})
		for _, c := range list {
			_ = eng.RemoveContainer(ctx, c.ID)
		}
		if err := eng.RemoveNetwork(ctx, l.net); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		eng.Close()
	})
	ctx := context.Background()
	if _, err := eng.EnsureNetwork(ctx, engine.NetworkSpec{Name: l.net, BridgeName: names.Bridge,
		Labels: map[string]string{engine.LabelNode: node}}); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *lab) container(name string) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img, err := images.Ensure(ctx, l.eng, images.Options{}, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	id, err := l.eng.CreateContainer(ctx, engine.ContainerSpec{
		Name: "wharf-" + l.node + "-" + name, Image: img.Tag, Entrypoint: []string{images.NodePath, "-e", probeServer},
		User: "10001:10001", Labels: map[string]string{engine.LabelNode: l.node}, Network: l.net,
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
	if err != nil || info.IP == "" {
		l.t.Fatalf("inspect: %v %+v", err, info)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(info.IP, "8080"), time.Second)
		if err == nil {
			c.Close()
			return info.IP
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("probe server in %s never listened: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connect asks the container at ip to open a TCP connection to host:port.
func connect(t *testing.T, ip, host string, port int) string {
	t.Helper()
	q := url.Values{"host": {host}, "port": {strconv.Itoa(port)}}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(ip, "8080") + "/connect?" + q.Encode())
	if err != nil {
		t.Fatalf("the host could not reach the container at %s: %v", ip, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		OK   bool
		Code string
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %s", err, b)
	}
	if r.OK {
		return "ok"
	}
	return r.Code
}

// Invariant: with the rules installed a container can reach neither another
// container on its bridge nor anything on the host side of the bridge, while
// the host still reaches the container; without them (the control, before
// Apply and after Remove) both connections succeed, so the rules are what
// blocks them.
func TestFirewallBlocksNeighboursAndHost(t *testing.T) {
	needIptables(t)
	node := randID("tn")
	names := NamesFor(node)
	f := New(Config{Names: names, Policy: Policy{Egress: true}}, quiet())
	t.Cleanup(func() { _ = f.Remove(context.Background()) })
	l := newLab(t, names, node)
	a, b := l.container("a"), l.container("b")
	ninfo, err := l.eng.InspectNetwork(context.Background(), l.net)
	if err != nil {
		t.Fatal(err)
	}
	gw := ninfo.Gateway
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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
	port := ln.Addr().(*net.TCPAddr).Port

	if got := connect(t, a, b, 8080); got != "ok" {
		t.Fatalf("control: a -> b without rules: %s", got)
	}
	if got := connect(t, a, gw, port); got != "ok" {
		t.Fatalf("control: a -> host %s:%d without rules: %s", gw, port, got)
	}
	// The kernel completes the handshake before Accept returns: wait until
	// the control connection is counted, or a loaded machine counts it later
	// and it looks like one that got through the rules.
	for deadline := time.Now().Add(10 * time.Second); accepted.Load() < 1; {
		if time.Now().After(deadline) {
			t.Fatal("the control connection was never accepted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := accepted.Load()

	if err := f.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := connect(t, a, b, 8080); got != "EHOSTUNREACH" {
		t.Errorf("a -> b with rules: %s, want EHOSTUNREACH", got)
	}
	if got := connect(t, b, a, 8080); got != "EHOSTUNREACH" {
		t.Errorf("b -> a with rules: %s, want EHOSTUNREACH", got)
	}
	if got := connect(t, a, gw, port); got != "EHOSTUNREACH" {
		t.Errorf("a -> host listener with rules: %s, want EHOSTUNREACH", got)
	}
	for _, p := range []int{2375, 2376, 22} { // Docker API (TCP), SSH: nothing listens, yet refused by rule
		if got := connect(t, a, gw, p); got != "EHOSTUNREACH" {
			t.Errorf("a -> host port %d with rules: %s, want EHOSTUNREACH", p, got)
		}
	}
	if n := accepted.Load(); n != before {
		t.Errorf("the host listener accepted %d connections from a confined container", n-before)
	}
	out, err := exec.Command("iptables", "-w", "-S", names.Forward).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-d 169.254.0.0/16 -j REJECT") {
		t.Errorf("metadata rule not installed: %v\n%s", err, out)
	}

	if err := f.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := connect(t, a, gw, port); got != "ok" {
		t.Errorf("a -> host after remove: %s, want ok", got)
	}
}
