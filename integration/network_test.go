package integration

import (
	"net/url"
	"strings"
	"testing"

	"github.com/wharfhq/wharf/integration/wharftest"
	"github.com/wharfhq/wharf/netattach"
)

// codeNetInfo answers the container's name, its address on the bridge and
// the resolver files it sees.
const codeNetInfo = `module.exports = function (cb) {
  const fs = require('fs');
  const eth0 = (require('os').networkInterfaces().eth0 || []).find((a) => a.family === 'IPv4' || a.family === 4);
  cb(null, {host: require('os').hostname(), ip: eth0 ? eth0.address : '',
    resolv: fs.readFileSync('/etc/resolv.conf', 'utf8'), hosts: fs.readFileSync('/etc/hosts', 'utf8')});
}`

// Invariant: whoever connects tenant containers to the node's bridge, the
// node itself (--container-network wharf, netattach) or the engine (engine),
// a tenant is served at the address the node records, its container
// resolves names, and another tenant cannot open a connection to it.
func TestContainerNetworkModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"wharf", "engine"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, wharftest.WithArgs("--container-network", mode, "--pool-size", "2"))
			a := createTenant(t, n, "neta")
			b := createTenant(t, n, "netb")
			deploy(t, n, a, "neta", "info", codeNetInfo, nil)
			deploy(t, n, b, "netb", "connect", codeConnect, nil)

			r := do(t, n, "GET", "/run/neta/info", "", nil)
			expect(t, r, 200)
			var info struct{ Host, IP, Resolv, Hosts string }
			if err := r.JSON(&info); err != nil || info.IP == "" {
				t.Fatalf("neta's address: %v %s", err, r.Body)
			}
			var found bool
			for _, c := range nodeContainers(t, n.NodeID) {
				if !strings.HasPrefix(c.ID, info.Host) {
					continue
				}
				found = true
				label, labelled := c.Labels[netattach.LabelIP]
				switch mode {
				case "wharf":
					if label != info.IP {
						t.Errorf("the container is at %s, its %s label says %q", info.IP, netattach.LabelIP, label)
					}
					if c.IP != "" && c.IP != info.IP {
						t.Errorf("the engine connected the container too, at %s", c.IP)
					}
				case "engine":
					if labelled {
						t.Errorf("an engine-connected container carries %s=%s", netattach.LabelIP, label)
					}
					if c.IP != info.IP {
						t.Errorf("the engine has the container at %q, it says %s", c.IP, info.IP)
					}
				}
			}
			if !found {
				t.Fatalf("no container of node %s named %s", n.NodeID, info.Host)
			}
			if !strings.Contains(info.Resolv, "nameserver ") {
				t.Errorf("no nameserver in the container's resolv.conf:\n%s", info.Resolv)
			}
			if mode == "wharf" && !strings.Contains(info.Hosts, "localhost") {
				t.Errorf("no localhost in the container's /etc/hosts:\n%s", info.Hosts)
			}

			q := url.Values{"host": {info.IP}, "port": {"8080"}}
			r = do(t, n, "GET", "/run/netb/connect?"+q.Encode(), "", nil)
			expect(t, r, 200)
			var out struct {
				OK   bool
				Code string
			}
			_ = r.JSON(&out)
			if out.OK || out.Code != "EHOSTUNREACH" {
				t.Errorf("another tenant connecting to %s:8080: %s, want EHOSTUNREACH", info.IP, r.Body)
			}
		})
	}
}
