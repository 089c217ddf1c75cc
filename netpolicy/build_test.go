package netpolicy

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBuildNamesFor(t *testing.T) {
	for _, id := range []string{"n1", "abcdefghijkl", "node-with-a-long-id-1"} {
		b, w := BuildNamesFor(id), NamesFor(id)
		if len(b.Bridge) > 15 || len(b.Forward) > 28 || len(b.Input) > 28 {
			t.Errorf("%s: names too long: %+v", id, b)
		}
		if b.Bridge == w.Bridge || b.Forward == w.Forward || b.Input == w.Input || b.Forward == b.Input {
			t.Errorf("%s: build names %+v collide with tenant names %+v", id, b, w)
		}
	}
	if got := BuildNamesFor("n1"); got != (Names{Bridge: "wb-n1", Forward: "WHARF-BF-n1", Input: "WHARF-BI-n1"}) {
		t.Errorf("names of n1: %+v", got)
	}
}

func TestBuildRules(t *testing.T) {
	n := BuildNamesFor("n1")
	const rej = "-j REJECT --reject-with icmp-admin-prohibited"
	const rej6 = "-j REJECT --reject-with icmp6-adm-prohibited"
	const est = "-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN"
	proxy := netip.MustParseAddrPort("172.18.0.1:41234")
	tests := []struct {
		name    string
		proxy   netip.AddrPort
		fam     Family
		forward []string
		input   []string
	}{
		{
			name: "ipv4: only the proxy on the gateway", proxy: proxy, fam: IPv4,
			forward: []string{est, rej},
			input:   []string{est, "-d 172.18.0.1/32 -p tcp --dport 41234 -j RETURN", rej},
		},
		{
			name: "ipv4 without a proxy: nothing at all", fam: IPv4,
			forward: []string{est, rej},
			input:   []string{est, rej},
		},
		{
			name: "ipv6: an IPv4 proxy opens nothing", proxy: proxy, fam: IPv6,
			forward: []string{est, rej6},
			input:   []string{est, rej6},
		},
		{
			name: "ipv6 proxy on ipv6", proxy: netip.MustParseAddrPort("[fd00::1]:8080"), fam: IPv6,
			forward: []string{est, rej6},
			input:   []string{est, "-d fd00::1/128 -p tcp --dport 8080 -j RETURN", rej6},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := BuildRules(n, tt.proxy, tt.fam, "DOCKER-USER")
			if got := rule(rs, n.Forward); !slices.Equal(got, tt.forward) {
				t.Errorf("forward chain:\n got %q\nwant %q", got, tt.forward)
			}
			if got := rule(rs, n.Input); !slices.Equal(got, tt.input) {
				t.Errorf("input chain:\n got %q\nwant %q", got, tt.input)
			}
			var hooks []string
			for _, h := range rs.Hooks {
				hooks = append(hooks, h.Parent+" "+strings.Join(h.Args, " "))
			}
			want := []string{"DOCKER-USER -i wb-n1 -j WHARF-BF-n1", "DOCKER-USER -o wb-n1 -j WHARF-BF-n1", "INPUT -i wb-n1 -j WHARF-BI-n1"}
			if !slices.Equal(hooks, want) {
				t.Errorf("hooks %q, want %q", hooks, want)
			}
		})
	}
}

// Invariant: a build firewall installs, checks and removes like the tenant
// one (the same machinery), including its jump for traffic into the bridge
// and under either forward parent.
func TestBuildFirewallLifecycle(t *testing.T) {
	needIptables(t)
	ctx := context.Background()
	names := BuildNamesFor(randID("tb"))
	proxy := netip.MustParseAddrPort("10.99.0.1:3128")
	f := New(Config{Names: names, Rules: func(fam Family, parent string) Ruleset {
		return BuildRules(names, proxy, fam, parent)
	}}, quiet())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := f.Remove(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := f.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Check(ctx); err != nil {
		t.Fatal(err)
	}
	in := iptablesS(t, "iptables", names.Input)
	if !strings.Contains(in, fmt.Sprintf("-A %s -d 10.99.0.1/32 -p tcp -m tcp --dport 3128 -j RETURN", names.Input)) {
		t.Fatalf("proxy rule missing:\n%s", in)
	}
	all := iptablesS(t, "iptables")
	for _, hook := range []string{"-i " + names.Bridge + " -j " + names.Forward, "-o " + names.Bridge + " -j " + names.Forward} {
		if got := countLines(all, hook); got != 1 {
			t.Errorf("%d copies of %q after two applies", got, hook)
		}
	}
	// A jump left under the other forward parent (Docker restarted or gone)
	// is removed too.
	if out, err := exec.Command("iptables", "-w", "-I", "FORWARD", "1", "-o", names.Bridge, "-j", names.Forward).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := f.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	for _, fam := range f.Families() {
		if all := iptablesS(t, fam.Cmd); strings.Contains(all, names.Bridge) || strings.Contains(all, names.Forward) || strings.Contains(all, names.Input) {
			t.Errorf("%s: rules left after remove:\n%s", fam.Name, all)
		}
	}
}
