package netattach

import (
	"fmt"
	"net"
	"net/netip"
)

// allocator hands out the addresses of one subnet, next-fit: a released
// address comes back only after the rest of the subnet has been used, so a
// peer's cache of an old container's address has long expired by then.
type allocator struct {
	prefix netip.Prefix
	gw     netip.Addr
	next   netip.Addr
	used   map[netip.Addr]string // address -> owner, for error messages
}

func newAllocator(prefix netip.Prefix, gw netip.Addr) *allocator {
	prefix = prefix.Masked()
	return &allocator{prefix: prefix, gw: gw, next: startOf(prefix), used: map[netip.Addr]string{}}
}

// startOf is where the allocator starts: the middle of the subnet. The engine
// hands out addresses from the bottom up to containers it connects itself
// (none on a node's network, but an operator may connect one), so the two
// ranges meet only when the subnet is nearly full.
func startOf(p netip.Prefix) netip.Addr {
	bits := p.Addr().BitLen() - p.Bits()
	if bits < 2 {
		return p.Addr()
	}
	b := p.Addr().AsSlice()
	// Set the highest host bit.
	i := p.Bits() / 8
	b[i] |= 0x80 >> (p.Bits() % 8)
	a, _ := netip.AddrFromSlice(b)
	return a
}

// usable says whether a may be given to a container: inside the subnet and
// neither its network, its broadcast nor its gateway address.
func usable(p netip.Prefix, gw, a netip.Addr) bool {
	if !p.Contains(a) || a == gw || a == p.Addr() {
		return false
	}
	return a != lastOf(p)
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	host := p.Addr().BitLen() - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// nextFree is the first usable address not taken, from start on, wrapping
// around the subnet once.
func nextFree(p netip.Prefix, gw, start netip.Addr, taken func(netip.Addr) bool) (netip.Addr, bool) {
	if !p.Contains(start) {
		start = p.Addr()
	}
	a := start
	for {
		if usable(p, gw, a) && !taken(a) {
			return a, true
		}
		a = a.Next()
		if !p.Contains(a) {
			a = p.Addr()
		}
		if a == start {
			return netip.Addr{}, false
		}
	}
}

// reserve takes the next free address for owner.
func (al *allocator) reserve(owner string) (netip.Addr, error) {
	a, ok := nextFree(al.prefix, al.gw, al.next, func(a netip.Addr) bool { _, t := al.used[a]; return t })
	if !ok {
		return netip.Addr{}, fmt.Errorf("no free address left in %s (%d containers)", al.prefix, len(al.used))
	}
	al.used[a] = owner
	al.next = a.Next()
	return a, nil
}

// mark records an address in use that was handed out before (a container
// found at start); addresses outside the subnet are ignored.
func (al *allocator) mark(a netip.Addr, owner string) {
	if al.prefix.Contains(a) {
		al.used[a] = owner
	}
}

func (al *allocator) release(a netip.Addr) { delete(al.used, a) }

// macFor derives a container's MAC from its IPv4 address as Docker does
// (02:42 and the four address bytes), so an address handed out again keeps
// its MAC and a peer's ARP cache stays right.
func macFor(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

// vethName is the host end's interface name for a container id: unique per
// container, at most 15 bytes (IFNAMSIZ), and recognisable in `ip link`.
func vethName(containerID string) string {
	const prefix = "wh"
	if len(containerID) > 15-len(prefix) {
		containerID = containerID[:15-len(prefix)]
	}
	return prefix + containerID
}
