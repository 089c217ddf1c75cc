package netpolicy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestNamesFor(t *testing.T) {
	tests := []struct {
		id     string
		bridge string
	}{
		{"n1a2b3c4d", "wh-n1a2b3c4d"},
		{"abcdefghijkl", "wh-abcdefghijkl"},
		{"abcdefghijklm", ""}, // hashed
	}
	for _, tt := range tests {
		n := NamesFor(tt.id)
		if len(n.Bridge) > 15 {
			t.Errorf("%s: bridge %q longer than 15 bytes", tt.id, n.Bridge)
		}
		if len(n.Forward) > 28 || len(n.Input) > 28 {
			t.Errorf("%s: chain names %q %q longer than iptables allows", tt.id, n.Forward, n.Input)
		}
		if tt.bridge != "" && n.Bridge != tt.bridge {
			t.Errorf("%s: bridge %q, want %q", tt.id, n.Bridge, tt.bridge)
		}
		if n.Forward == n.Input {
			t.Errorf("%s: one chain for both directions", tt.id)
		}
	}
	long1, long2 := NamesFor("node-with-a-long-id-1"), NamesFor("node-with-a-long-id-2")
	if long1 == long2 {
		t.Error("two long ids share names")
	}
	if long1 != NamesFor("node-with-a-long-id-1") {
		t.Error("names are not deterministic")
	}
}

func rule(rs Ruleset, chain string) []string {
	var out []string
	for _, r := range rs.Chains[chain] {
		out = append(out, strings.Join(r, " "))
	}
	return out
}

func TestRules(t *testing.T) {
	n := NamesFor("n1")
	const rej = "-j REJECT --reject-with icmp-admin-prohibited"
	const rej6 = "-j REJECT --reject-with icmp6-adm-prohibited"
	const est = "-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN"
	deny := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name    string
		policy  Policy
		fam     Family
		parent  string
		forward []string
		input   []string
	}{
		{
			name: "ipv4 with egress", policy: Policy{Egress: true}, fam: IPv4, parent: "DOCKER-USER",
			forward: []string{est, "-o wh-n1 " + rej, "-d 169.254.0.0/16 " + rej, "-j RETURN"},
			input:   []string{est, rej},
		},
		{
			name: "ipv4 without egress", policy: Policy{}, fam: IPv4, parent: "DOCKER-USER",
			forward: []string{est, "-o wh-n1 " + rej, "-d 169.254.0.0/16 " + rej, rej},
			input:   []string{est, rej},
		},
		{
			name: "ipv4 deny list, masked, own family only", policy: Policy{Egress: true, Deny: deny}, fam: IPv4, parent: "FORWARD",
			forward: []string{est, "-o wh-n1 " + rej, "-d 169.254.0.0/16 " + rej, "-d 10.0.0.0/8 " + rej, "-j RETURN"},
			input:   []string{est, rej},
		},
		{
			name: "ipv6 refuses everything new, even with egress", policy: Policy{Egress: true, Deny: deny}, fam: IPv6, parent: "FORWARD",
			forward: []string{est, rej6},
			input:   []string{est, rej6},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := Rules(n, tt.policy, tt.fam, tt.parent)
			if got := rule(rs, n.Forward); !slices.Equal(got, tt.forward) {
				t.Errorf("forward chain:\n got %q\nwant %q", got, tt.forward)
			}
			if got := rule(rs, n.Input); !slices.Equal(got, tt.input) {
				t.Errorf("input chain:\n got %q\nwant %q", got, tt.input)
			}
			want := []Hook{
				{Parent: tt.parent, Args: []string{"-i", "wh-n1", "-j", n.Forward}},
				{Parent: "INPUT", Args: []string{"-i", "wh-n1", "-j", n.Input}},
			}
			if len(rs.Hooks) != 2 || rs.Hooks[0].Parent != want[0].Parent || !slices.Equal(rs.Hooks[0].Args, want[0].Args) ||
				rs.Hooks[1].Parent != want[1].Parent || !slices.Equal(rs.Hooks[1].Args, want[1].Args) {
				t.Errorf("hooks %+v, want %+v", rs.Hooks, want)
			}
		})
	}
}

// Every chain's last rule decides: nothing from the bridge falls through to
// the host's own (possibly permissive) rules except replies and, with
// egress, traffic Docker's rules then route out.
func TestRulesEndInAVerdict(t *testing.T) {
	n := NamesFor("n1")
	for _, fam := range []Family{IPv4, IPv6} {
		for _, egress := range []bool{true, false} {
			rs := Rules(n, Policy{Egress: egress}, fam, "DOCKER-USER")
			in := rs.Chains[n.Input]
			if last := strings.Join(in[len(in)-1], " "); !strings.HasPrefix(last, "-j REJECT") {
				t.Errorf("%s egress=%v: input chain ends with %q", fam.Name, egress, last)
			}
			fwd := rs.Chains[n.Forward]
			last := strings.Join(fwd[len(fwd)-1], " ")
			if wantReturn := egress && !fam.V6; wantReturn != (last == "-j RETURN") {
				t.Errorf("%s egress=%v: forward chain ends with %q", fam.Name, egress, last)
			}
		}
	}
}

func TestScript(t *testing.T) {
	n := NamesFor("n1")
	rs := Rules(n, Policy{Egress: true}, IPv4, "DOCKER-USER")
	got := Script(rs, rs.Hooks[1:])
	want := "*filter\n" +
		":WHARF-F-n1 - [0:0]\n" +
		":WHARF-I-n1 - [0:0]\n" +
		"-A WHARF-F-n1 -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN\n" +
		"-A WHARF-F-n1 -o wh-n1 -j REJECT --reject-with icmp-admin-prohibited\n" +
		"-A WHARF-F-n1 -d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited\n" +
		"-A WHARF-F-n1 -j RETURN\n" +
		"-A WHARF-I-n1 -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN\n" +
		"-A WHARF-I-n1 -j REJECT --reject-with icmp-admin-prohibited\n" +
		"-I INPUT 1 -i wh-n1 -j WHARF-I-n1\n" +
		"COMMIT\n"
	if got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseDeny(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{" 10.0.0.0/8 , 192.168.0.0/16,", []string{"10.0.0.0/8", "192.168.0.0/16"}, false},
		{"fd00::/8", []string{"fd00::/8"}, false},
		{"10.0.0.1", nil, true},
		{"10.0.0.0/33", nil, true},
		{"nonsense", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseDeny(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("%q: err %v", tt.in, err)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if !slices.Equal(s, tt.want) {
			t.Errorf("%q: %v, want %v", tt.in, s, tt.want)
		}
	}
}
