package netpolicy

import (
	"net/netip"
	"strconv"
)

// BuildNamesFor names the bridge and chains of a node's build network (module
// builds), distinct from the tenants' NamesFor: "wb-" keeps the bridge within
// 15 bytes like "wh-".
func BuildNamesFor(nodeID string) Names {
	s := nameSuffix(nodeID)
	return Names{Bridge: "wb-" + s, Forward: "WHARF-BF-" + s, Input: "WHARF-BI-" + s}
}

// BuildRules decides the rules of a build bridge whose only way out is the
// registry proxy listening on the host at proxy (the bridge's gateway).
//
// INPUT: replies pass, new TCP connections to proxy pass, everything else
// from the bridge to the host is refused (the host's services on any of its
// addresses, DNS included: npm resolves nothing itself behind a proxy).
// Forwarded: replies pass, everything else into or out of the bridge is
// refused, so no build container reaches the internet, link-local metadata,
// private ranges or other bridges directly, and nothing else reaches them.
// The network is also Docker-internal (Docker's own rules drop what leaves
// its subnet); these REJECTs come first and fail a connection at once
// instead of leaving it to time out. IPv6: nothing but replies.
func BuildRules(n Names, proxy netip.AddrPort, fam Family, forwardParent string) Ruleset {
	with := rejectWith(fam)
	in := [][]string{established}
	if proxy.IsValid() && proxy.Addr().Is6() == fam.V6 {
		in = append(in, []string{"-d", netip.PrefixFrom(proxy.Addr(), proxy.Addr().BitLen()).String(),
			"-p", "tcp", "--dport", strconv.Itoa(int(proxy.Port())), "-j", "RETURN"})
	}
	in = append(in, with())
	fwd := [][]string{established, with()}
	return Ruleset{
		Chains: map[string][][]string{n.Forward: fwd, n.Input: in},
		Order:  []string{n.Forward, n.Input},
		Hooks: []Hook{
			{Parent: forwardParent, Args: []string{"-i", n.Bridge, "-j", n.Forward}},
			{Parent: forwardParent, Args: []string{"-o", n.Bridge, "-j", n.Forward}},
			{Parent: "INPUT", Args: []string{"-i", n.Bridge, "-j", n.Input}},
		},
	}
}
