package netattach

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
)

// fallbackDNS is what Docker gives a container when the host only has
// resolvers on loopback, which a container cannot reach.
var fallbackDNS = []string{"8.8.8.8", "8.8.4.4"}

// resolvConf is the resolv.conf of a tenant container, made from the host's:
// its search and options lines as they are, its IPv4 nameservers except those
// on loopback (the container has its own), and Docker's fallback when none is
// left. Containers have no IPv6 route, so IPv6 nameservers are dropped too.
func resolvConf(host []byte) []byte {
	var servers, rest []string
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			a, err := netip.ParseAddr(f[1])
			if err == nil && a.Is4() && !a.IsLoopback() && !a.IsUnspecified() {
				servers = append(servers, a.String())
			}
		case "search", "domain", "options":
			rest = append(rest, strings.Join(f, " "))
		}
	}
	if len(servers) == 0 {
		servers = fallbackDNS
	}
	var b strings.Builder
	b.WriteString("# Written by Wharf from the host's resolv.conf.\n")
	for _, s := range servers {
		b.WriteString("nameserver " + s + "\n")
	}
	for _, l := range rest {
		b.WriteString(l + "\n")
	}
	return []byte(b.String())
}
