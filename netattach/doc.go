// Package netattach attaches tenant containers to the node's bridge itself,
// instead of through the engine's network stack.
//
// Docker runs a copy of its own daemon binary (the libnetwork-setkey OCI
// hook) for every container it connects to a network; on a 2-core node that
// hook is about a third of the CPU of creating a container, and a burst of new
// tenants waits on container creation. A container created with its network
// disabled gets an empty network namespace and no hook; this package then
// plumbs it like Docker's bridge driver would: a veth pair, one end enslaved
// to the node's bridge (the one the engine created, so its NAT, its
// inter-container drop rule and Wharf's firewall all still apply), the other
// end named eth0 in the container with an address, a MAC derived from it and
// a default route; plus a resolv.conf the engine would otherwise write.
//
// The engine still owns the bridge and the subnet; this package owns the
// addresses it hands out within it, recorded in a label on each container so
// a restarted node learns them back.
package netattach
