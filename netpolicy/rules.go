// Package netpolicy owns the firewall rules that confine tenant containers on
// a node's bridge: no traffic to other tenants, none to the host itself (its
// Wharf port, the Docker API, anything listening on any of its addresses),
// none to link-local addresses (cloud metadata), and outbound internet only
// when the node allows egress. The rules live in chains of their own, named
// after the node, hooked from DOCKER-USER (forwarded traffic) and INPUT
// (traffic to the host), and matched on the bridge's interface name; Wharf
// installs them at start, checks them while it runs, removes them at drain.
//
// What the rules are is decided by pure functions (Rules, Script); Firewall
// applies them with the iptables binaries.
package netpolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// Names are the host-side names of one node's network objects.
type Names struct {
	Bridge  string // the bridge interface, at most 15 bytes (IFNAMSIZ-1)
	Forward string // chain for traffic from the bridge routed elsewhere
	Input   string // chain for traffic from the bridge to the host itself
}

// maxSuffix keeps "wh-"+suffix within the kernel's 15-byte interface names.
const maxSuffix = 12

// NamesFor derives the names from a node id: the id itself when short enough
// to read in `ip link` and `iptables -S`, else a hash of it.
func NamesFor(nodeID string) Names {
	s := nameSuffix(nodeID)
	return Names{Bridge: "wh-" + s, Forward: "WHARF-F-" + s, Input: "WHARF-I-" + s}
}

// nameSuffix is the node's part of every name: the id itself when short
// enough, else a hash of it.
func nameSuffix(nodeID string) string {
	if len(nodeID) <= maxSuffix {
		return nodeID
	}
	sum := sha256.Sum256([]byte(nodeID))
	return hex.EncodeToString(sum[:])[:maxSuffix]
}

// Family is an IP family and its iptables binaries.
type Family struct {
	Name    string // "ipv4", "ipv6"
	Cmd     string // iptables / ip6tables
	Restore string // iptables-restore / ip6tables-restore
	V6      bool
}

// The two families Wharf programs.
var (
	IPv4 = Family{Name: "ipv4", Cmd: "iptables", Restore: "iptables-restore"}
	IPv6 = Family{Name: "ipv6", Cmd: "ip6tables", Restore: "ip6tables-restore", V6: true}
)

// LinkLocal is where cloud metadata services answer (169.254.169.254 and
// friends); containers never reach any of it.
var LinkLocal = netip.MustParsePrefix("169.254.0.0/16")

// Policy is what a node allows its tenant containers.
type Policy struct {
	// Egress allows new outbound connections to addresses not denied below.
	Egress bool
	// Deny lists more destinations refused even with egress (e.g. private
	// ranges of the node's own network).
	Deny []netip.Prefix
}

// Hook is the jump from a built-in (or Docker's) chain into one of ours.
type Hook struct {
	Parent string   // chain the jump sits in, at its top
	Args   []string // match and target, without -A/-I and the chain
}

// Ruleset is everything to install for one family.
type Ruleset struct {
	Chains map[string][][]string // chain -> rules in order (args after "-A chain")
	Order  []string              // chains in a stable order
	Hooks  []Hook
}

// Rules decides the rules of one family. forwardParent is the chain that sees
// forwarded traffic first: DOCKER-USER where Docker manages the family's
// firewall, FORWARD otherwise.
//
// IPv4: replies to connections the host opened (the proxy's, the probes')
// pass; everything else from the bridge to the host is refused; forwarded
// traffic to the bridge itself (another tenant), to link-local addresses and
// to denied prefixes is refused; the rest passes on to Docker's rules only
// with egress. IPv6: the network has no IPv6 addresses, so only replies pass.
// Refusals are REJECTs with "administratively prohibited": code that tries
// gets an immediate EHOSTUNREACH instead of hanging until a timeout, and
// nothing is learned that the bridge's existence does not already tell.
func Rules(n Names, p Policy, fam Family, forwardParent string) Ruleset {
	with := rejectWith(fam)

	fwd := [][]string{established}
	if fam.V6 {
		fwd = append(fwd, with())
	} else {
		fwd = append(fwd, with("-o", n.Bridge), with("-d", LinkLocal.String()))
		for _, d := range p.Deny {
			if d.Addr().Is6() == fam.V6 {
				fwd = append(fwd, with("-d", d.Masked().String()))
			}
		}
		if p.Egress {
			fwd = append(fwd, []string{"-j", "RETURN"})
		} else {
			fwd = append(fwd, with())
		}
	}
	in := [][]string{established, with()}
	return Ruleset{
		Chains: map[string][][]string{n.Forward: fwd, n.Input: in},
		Order:  []string{n.Forward, n.Input},
		Hooks: []Hook{
			{Parent: forwardParent, Args: []string{"-i", n.Bridge, "-j", n.Forward}},
			{Parent: "INPUT", Args: []string{"-i", n.Bridge, "-j", n.Input}},
		},
	}
}

// established lets replies to connections already allowed pass on.
var established = []string{"-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"}

// rejectWith returns a rule maker: the match, then a REJECT of fam that
// fails connections at once ("administratively prohibited").
func rejectWith(fam Family) func(match ...string) []string {
	reject := []string{"-j", "REJECT", "--reject-with", "icmp-admin-prohibited"}
	if fam.V6 {
		reject = []string{"-j", "REJECT", "--reject-with", "icmp6-adm-prohibited"}
	}
	return func(match ...string) []string { return append(match, reject...) }
}

// Script renders the iptables-restore --noflush input that creates (or
// flushes) the chains and fills them in one atomic commit, plus the hooks in
// missing (those already present are not inserted twice).
func Script(rs Ruleset, missing []Hook) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, c := range rs.Order {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, c := range rs.Order {
		for _, r := range rs.Chains[c] {
			fmt.Fprintf(&b, "-A %s %s\n", c, strings.Join(r, " "))
		}
	}
	for _, h := range missing {
		fmt.Fprintf(&b, "-I %s 1 %s\n", h.Parent, strings.Join(h.Args, " "))
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// ParseDeny parses a comma-separated list of CIDR prefixes.
func ParseDeny(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR prefix like 10.0.0.0/8", f)
		}
		out = append(out, p)
	}
	return out, nil
}
