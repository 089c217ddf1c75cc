package netattach

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// realBridge is a bridge of the test's own, with the gateway's address.
func realBridge(t *testing.T) (name string, gw netip.Prefix) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("plumbing needs root")
	}
	suffix := randHex(t, 3)
	name = "whtb" + suffix
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	br := &netlink.Bridge{LinkAttrs: attrs}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	b, _ := hex.DecodeString(suffix)
	gw = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 231, b[0], 1}), 24)
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: ipNet(gw)}); err != nil {
		t.Fatalf("bridge address: %v", err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	return name, gw
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// inNewNetns starts a TCP server answering "hi" on :8080 in a network
// namespace of its own (loopback only, like a container the engine did not
// connect), and returns its pid once it listens.
func inNewNetns(t *testing.T) int {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare is not installed")
	}
	cmd := exec.Command("unshare", "--net", "node", "-e",
		`require('net').createServer((s) => s.end('hi')).listen(8080, () => console.log('listening'))`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "listening" {
		t.Fatalf("server in a new namespace: %q, %v", line, err)
	}
	return cmd.Process.Pid
}

// TestNetlinkAttach pins what a container gets from the plumbing, on a real
// bridge and a real namespace: reachable from the host at its address, MAC
// derived from it, a default route via the gateway, no IPv6 address on the
// bridge, and a host end the bridge isolates from every other isolated port.
func TestNetlinkAttach(t *testing.T) {
	bridge, gw := realBridge(t)
	pid := inNewNetns(t)
	addr := netip.PrefixFrom(gw.Addr().Next(), gw.Bits())
	l := link{Pid: pid, Host: "whtest" + randHex(t, 4), Bridge: bridge, Addr: addr, Gateway: gw.Addr(), MAC: macFor(addr.Addr())}
	p := netlinkPlumber{}
	if err := p.attach(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.detach(l.Host) })

	conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(addr.Addr(), 8080).String(), 5*time.Second)
	if err != nil {
		t.Fatalf("the container is not reachable at %s: %v", addr.Addr(), err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || string(got) != "hi" {
		t.Fatalf("read %q, %v", got, err)
	}

	host, err := netlink.LinkByName(l.Host)
	if err != nil {
		t.Fatal(err)
	}
	if host.Attrs().MasterIndex == 0 {
		t.Error("the host end is not on the bridge")
	}
	pi, err := netlink.LinkGetProtinfo(host)
	if err != nil {
		t.Fatal(err)
	}
	if !pi.Isolated {
		t.Error("the host end is not an isolated bridge port")
	}

	ns, err := netns.GetFromPid(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth.Attrs().HardwareAddr.String() != l.MAC.String() {
		t.Errorf("MAC %s, want %s", eth.Attrs().HardwareAddr, l.MAC)
	}
	if v6, err := h.AddrList(eth, netlink.FAMILY_V6); err != nil || len(v6) != 0 {
		t.Errorf("eth0 has IPv6 addresses %v (%v)", v6, err)
	}
	routes, err := h.RouteList(eth, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var dflt bool
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(gw.Addr().AsSlice()) {
			dflt = true
		}
	}
	if !dflt {
		t.Errorf("no default route via %s: %v", gw.Addr(), routes)
	}

	// Detaching removes the host end (and the kernel the peer); twice is no error.
	if err := p.detach(l.Host); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(l.Host); err == nil {
		t.Error("the host end survived detach")
	}
	if err := p.detach(l.Host); err != nil {
		t.Errorf("second detach: %v", err)
	}
}

// TestNetlinkAttachFailsCleanly pins that a failed attach says why and
// leaves no host end behind.
func TestNetlinkAttachFailsCleanly(t *testing.T) {
	bridge, gw := realBridge(t)
	pid := inNewNetns(t)
	addr := netip.PrefixFrom(gw.Addr().Next(), gw.Bits())
	p := netlinkPlumber{}
	cases := map[string]link{
		"missing bridge": {Pid: pid, Bridge: "whtb-missing", Addr: addr, Gateway: gw.Addr()},
		"missing pid":    {Pid: 1 << 30, Bridge: bridge, Addr: addr, Gateway: gw.Addr()},
		// A gateway outside the subnet cannot be routed through: the last step fails.
		"bad gateway": {Pid: pid, Bridge: bridge, Addr: addr, Gateway: netip.MustParseAddr("192.0.2.1")},
	}
	for name, l := range cases {
		t.Run(name, func(t *testing.T) {
			l.Host, l.MAC = "whtest"+randHex(t, 4), macFor(addr.Addr())
			if err := p.attach(l); err == nil {
				_ = p.detach(l.Host)
				t.Fatal("attach succeeded")
			}
			if _, err := netlink.LinkByName(l.Host); err == nil {
				_ = p.detach(l.Host)
				t.Error("a failed attach left its host end")
			}
		})
	}
}

// TestCapsMissing pins the capability check that decides --container-network auto.
func TestCapsMissing(t *testing.T) {
	cases := []struct {
		name, status, want string // want: "" for nil, else a substring of the error
	}{
		{"root on the host", "Name:\tx\nCapEff:\t000001ffffffffff\n", ""},
		{"docker default caps", "CapEff:\t00000000a80425fb\n", "CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE"},
		{"net admin and sys admin only", "CapEff:\t0000000000201000\n", "CAP_SYS_PTRACE"},
		{"all three", "CapEff:\t0000000000281000\n", ""},
		{"no line", "Name:\tx\n", "no CapEff"},
		{"garbage", "CapEff:\tzz\n", "capabilities"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := capsMissing(c.status)
			if c.want == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}
