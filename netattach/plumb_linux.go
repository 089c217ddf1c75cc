package netattach

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netlinkPlumber plumbs with netlink, as root (CAP_NET_ADMIN and CAP_SYS_ADMIN
// to enter the container's namespace).
type netlinkPlumber struct{}

func (netlinkPlumber) attach(l link) (err error) {
	br, err := netlink.LinkByName(l.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", l.Bridge, err)
	}
	ns, err := netns.GetFromPid(l.Pid)
	if err != nil {
		return fmt.Errorf("network namespace of pid %d: %w", l.Pid, err)
	}
	defer ns.Close()
	// A host end of the same name can only be a half-done earlier attempt.
	if old, err := netlink.LinkByName(l.Host); err == nil {
		_ = netlink.LinkDel(old)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.MasterIndex = l.Host, br.Attrs().MTU, br.Attrs().Index
	veth := netlink.NewVeth(attrs)
	veth.PeerName, veth.PeerHardwareAddr, veth.PeerNamespace = "eth0", l.MAC, netlink.NsFd(int(ns))
	veth.PeerMTU = uint32(br.Attrs().MTU)
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", l.Host, err)
	}
	defer func() {
		if err != nil {
			_ = netlink.LinkDel(veth) // takes the peer with it
		}
	}()
	host, err := netlink.LinkByName(l.Host)
	if err != nil {
		return fmt.Errorf("veth %s: %w", l.Host, err)
	}
	// Port isolation: the bridge forwards nothing between two isolated
	// ports, whatever the firewall says, so tenants cannot reach each other
	// even where br_netfilter is off. The host and the uplink still can.
	if err := netlink.LinkSetIsolated(host, true); err != nil {
		return fmt.Errorf("isolate %s: %w", l.Host, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("up %s: %w", l.Host, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the container's namespace: %w", err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0 in the container: %w", err)
	}
	// IPv4 only, as on the engine's bridge: no link-local IPv6 address that
	// would let a container speak on the bridge outside the IPv4 rules.
	const addrGenModeNone = 1 // IN6_ADDR_GEN_MODE_NONE
	if err := h.LinkSetIP6AddrGenMode(eth, addrGenModeNone); err != nil && !noIPv6(err) {
		return fmt.Errorf("eth0 ipv6 mode: %w", err)
	}
	ipnet := &net.IPNet{IP: l.Addr.Addr().AsSlice(), Mask: net.CIDRMask(l.Addr.Bits(), l.Addr.Addr().BitLen())}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipnet}); err != nil {
		return fmt.Errorf("eth0 address %s: %w", l.Addr, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: l.Gateway.AsSlice()}); err != nil {
		return fmt.Errorf("default route via %s: %w", l.Gateway, err)
	}
	return nil
}

func (netlinkPlumber) detach(host string) error {
	old, err := netlink.LinkByName(host)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	return netlink.LinkDel(old)
}

// supported says why this process cannot plumb (nil when it can): it needs
// CAP_NET_ADMIN for the links, CAP_SYS_ADMIN to enter a container's network
// namespace, and CAP_SYS_PTRACE to open that namespace by the pid of a
// process of another user. Root on the host has them all; a node in a
// container gets them only when given (deploy/local adds them).
func supported() error {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	return capsMissing(string(status))
}

// capsMissing reads the effective capabilities of a /proc/<pid>/status.
func capsMissing(status string) error {
	for _, line := range strings.Split(status, "\n") {
		hexCaps, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hexCaps), 16, 64)
		if err != nil {
			return fmt.Errorf("capabilities %q: %w", hexCaps, err)
		}
		var missing []string
		for _, c := range []struct {
			bit  uint
			name string
		}{{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}, {unix.CAP_SYS_PTRACE, "CAP_SYS_PTRACE"}} {
			if eff&(1<<c.bit) == 0 {
				missing = append(missing, c.name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("attaching containers to the bridge needs %s", strings.Join(missing, ", "))
		}
		return nil
	}
	return errors.New("no CapEff line in /proc/self/status")
}

// noIPv6 is the error of a kernel without IPv6, where there is nothing to turn off.
func noIPv6(err error) bool {
	return errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP)
}
