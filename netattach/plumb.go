package netattach

import (
	"net"
	"net/netip"
)

// link is everything the plumbing needs to connect one container.
type link struct {
	Pid     int          // a process in the container's network namespace
	Host    string       // the host end's name
	Bridge  string       // the bridge the host end joins
	Addr    netip.Prefix // the container's address, with the subnet's length
	Gateway netip.Addr
	MAC     net.HardwareAddr
}

// plumber connects a container; the real one is netlink, tests may fake it.
type plumber interface {
	attach(l link) error
	// detach removes a host end left behind (the kernel removes it with the
	// container's namespace; this is for a half-done attach).
	detach(host string) error
}
