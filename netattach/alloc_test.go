package netattach

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestStartOf(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"10.99.0.0/16", "10.99.128.0"},
		{"172.18.0.0/16", "172.18.128.0"},
		{"10.0.0.0/8", "10.128.0.0"},
		{"192.168.5.0/24", "192.168.5.128"},
		{"192.168.5.0/25", "192.168.5.64"},
		{"192.168.5.128/25", "192.168.5.192"},
		{"10.0.0.16/29", "10.0.0.20"},
		{"10.0.0.4/30", "10.0.0.6"},
		// Fewer than two host bits: no middle, the network address itself.
		{"10.0.0.4/31", "10.0.0.4"},
		{"10.0.0.4/32", "10.0.0.4"},
	} {
		if got := startOf(netip.MustParsePrefix(tc.prefix)); got != netip.MustParseAddr(tc.want) {
			t.Errorf("startOf(%s) = %s, want %s", tc.prefix, got, tc.want)
		}
	}
}

func TestLastOf(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"10.99.0.0/16", "10.99.255.255"},
		{"10.0.0.0/8", "10.255.255.255"},
		{"10.0.0.0/12", "10.15.255.255"},
		{"192.168.5.0/24", "192.168.5.255"},
		{"192.168.5.0/25", "192.168.5.127"},
		{"10.0.0.16/29", "10.0.0.23"},
		{"10.0.0.4/30", "10.0.0.7"},
		{"10.0.0.4/31", "10.0.0.5"},
		{"10.0.0.4/32", "10.0.0.4"},
		{"0.0.0.0/0", "255.255.255.255"},
	} {
		if got := lastOf(netip.MustParsePrefix(tc.prefix)); got != netip.MustParseAddr(tc.want) {
			t.Errorf("lastOf(%s) = %s, want %s", tc.prefix, got, tc.want)
		}
	}
}

func TestUsable(t *testing.T) {
	p16, gw16 := netip.MustParsePrefix("10.99.0.0/16"), netip.MustParseAddr("10.99.0.1")
	p30, gw30 := netip.MustParsePrefix("10.0.0.4/30"), netip.MustParseAddr("10.0.0.5")
	for _, tc := range []struct {
		name   string
		prefix netip.Prefix
		gw     netip.Addr
		addr   string
		want   bool
	}{
		{"network", p16, gw16, "10.99.0.0", false},
		{"broadcast", p16, gw16, "10.99.255.255", false},
		{"gateway", p16, gw16, "10.99.0.1", false},
		{"outside below", p16, gw16, "10.98.255.254", false},
		{"outside above", p16, gw16, "10.100.0.1", false},
		{"ipv6", p16, gw16, "::ffff:10.99.0.5", false},
		{"first host", p16, gw16, "10.99.0.2", true},
		{"middle", p16, gw16, "10.99.128.0", true},
		{"a .0 inside", p16, gw16, "10.99.7.0", true},
		{"a .255 inside", p16, gw16, "10.99.7.255", true},
		{"last host", p16, gw16, "10.99.255.254", true},
		{"/30 network", p30, gw30, "10.0.0.4", false},
		{"/30 gateway", p30, gw30, "10.0.0.5", false},
		{"/30 only host", p30, gw30, "10.0.0.6", true},
		{"/30 broadcast", p30, gw30, "10.0.0.7", false},
	} {
		if got := usable(tc.prefix, tc.gw, netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("%s: usable(%s, %s, %s) = %v, want %v", tc.name, tc.prefix, tc.gw, tc.addr, got, tc.want)
		}
	}
}

func TestNextFree(t *testing.T) {
	p24, gw24 := netip.MustParsePrefix("10.0.0.0/24"), netip.MustParseAddr("10.0.0.1")
	p29, gw29 := netip.MustParsePrefix("10.0.0.16/29"), netip.MustParseAddr("10.0.0.17")
	takenSet := func(addrs ...string) func(netip.Addr) bool {
		set := map[netip.Addr]bool{}
		for _, a := range addrs {
			set[netip.MustParseAddr(a)] = true
		}
		return func(a netip.Addr) bool { return set[a] }
	}
	all := func(netip.Addr) bool { return true }
	for _, tc := range []struct {
		name   string
		prefix netip.Prefix
		gw     netip.Addr
		start  string
		taken  func(netip.Addr) bool
		want   string // "" when nothing is free
	}{
		{"from start", p24, gw24, "10.0.0.128", takenSet(), "10.0.0.128"},
		{"skips taken", p24, gw24, "10.0.0.128", takenSet("10.0.0.128", "10.0.0.129"), "10.0.0.130"},
		{"start on the gateway", p24, gw24, "10.0.0.1", takenSet(), "10.0.0.2"},
		{"start on the network address", p24, gw24, "10.0.0.0", takenSet(), "10.0.0.2"},
		{"wraps past broadcast", p24, gw24, "10.0.0.254", takenSet("10.0.0.254"), "10.0.0.2"},
		{"start on broadcast wraps", p24, gw24, "10.0.0.255", takenSet(), "10.0.0.2"},
		{"wraps to a hole below start", p29, gw29, "10.0.0.20",
			takenSet("10.0.0.18", "10.0.0.20", "10.0.0.21", "10.0.0.22"), "10.0.0.19"},
		{"last free is just before start", p29, gw29, "10.0.0.20",
			takenSet("10.0.0.18", "10.0.0.20", "10.0.0.21", "10.0.0.22", "10.0.0.19"), ""},
		{"full subnet", p24, gw24, "10.0.0.128", all, ""},
		{"start below the prefix", p24, gw24, "9.255.255.255", takenSet(), "10.0.0.2"},
		{"start above the prefix", p24, gw24, "10.0.1.7", takenSet("10.0.0.2"), "10.0.0.3"},
		{"start not valid", p24, gw24, "", takenSet(), "10.0.0.2"},
		{"/31 has no usable address", netip.MustParsePrefix("10.0.0.4/31"), netip.MustParseAddr("10.0.0.4"),
			"10.0.0.4", takenSet(), ""},
		{"/32 has no usable address", netip.MustParsePrefix("10.0.0.4/32"), netip.Addr{},
			"10.0.0.4", takenSet(), ""},
	} {
		var start netip.Addr
		if tc.start != "" {
			start = netip.MustParseAddr(tc.start)
		}
		got, ok := nextFree(tc.prefix, tc.gw, start, tc.taken)
		if tc.want == "" {
			if ok {
				t.Errorf("%s: nextFree = %s, want none free", tc.name, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: nextFree = %s, %v; want %s", tc.name, got, ok, tc.want)
		}
	}
}

// A released address comes back only after the rest of the subnet was used.
func TestReserveIsNextFit(t *testing.T) {
	al := newAllocator(netip.MustParsePrefix("10.0.0.0/24"), netip.MustParseAddr("10.0.0.1"))
	first := mustReserve(t, al, "a")
	if want := netip.MustParseAddr("10.0.0.128"); first != want {
		t.Fatalf("first address %s, want %s (the middle of the subnet)", first, want)
	}
	second := mustReserve(t, al, "b")
	if want := netip.MustParseAddr("10.0.0.129"); second != want {
		t.Fatalf("second address %s, want %s", second, want)
	}
	al.release(first)
	// 253 usable (.2-.254); two were handed out, one of them released: the
	// next 251 reservations go everywhere but the released address.
	seen := map[netip.Addr]bool{second: true}
	for i := range 251 {
		a := mustReserve(t, al, "c")
		if a == first {
			t.Fatalf("released %s handed out again after %d reservations, before the rest of the subnet", first, i)
		}
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
	}
	if a := mustReserve(t, al, "d"); a != first {
		t.Fatalf("last free address %s, want the released %s", a, first)
	}
	if a, err := al.reserve("e"); err == nil {
		t.Fatalf("reserve on a full subnet gave %s", a)
	}
}

func TestReserveExhausted(t *testing.T) {
	// 10.0.0.16/29: .16 network, .17 gateway, .23 broadcast, .18-.22 usable.
	al := newAllocator(netip.MustParsePrefix("10.0.0.16/29"), netip.MustParseAddr("10.0.0.17"))
	got := map[netip.Addr]bool{}
	for range 5 {
		a := mustReserve(t, al, "c")
		if !usable(al.prefix, al.gw, a) || got[a] {
			t.Fatalf("reserve gave %s (taken so far %v)", a, got)
		}
		got[a] = true
	}
	_, err := al.reserve("sixth")
	if err == nil {
		t.Fatal("a sixth address from a /29 with a gateway")
	}
	if msg := err.Error(); !strings.Contains(msg, "10.0.0.16/29") || !strings.Contains(msg, "5 containers") {
		t.Errorf("exhaustion error %q does not name the subnet and its use", msg)
	}
	if len(al.used) != 5 {
		t.Errorf("a failed reserve changed the allocator: %d used", len(al.used))
	}
	// One released: exactly that one is free again.
	freed := netip.MustParseAddr("10.0.0.20")
	al.release(freed)
	if a := mustReserve(t, al, "again"); a != freed {
		t.Errorf("after release reserve gave %s, want %s", a, freed)
	}
}

func TestNewAllocatorMasksPrefix(t *testing.T) {
	al := newAllocator(netip.MustParsePrefix("10.0.0.77/24"), netip.MustParseAddr("10.0.0.1"))
	if a := mustReserve(t, al, "c"); a != netip.MustParseAddr("10.0.0.128") {
		t.Errorf("reserve on an unmasked prefix gave %s, want 10.0.0.128", a)
	}
}

func TestMark(t *testing.T) {
	al := newAllocator(netip.MustParsePrefix("10.0.0.0/24"), netip.MustParseAddr("10.0.0.1"))
	al.mark(netip.MustParseAddr("10.0.1.128"), "outside")
	al.mark(netip.MustParseAddr("192.168.0.5"), "elsewhere")
	if len(al.used) != 0 {
		t.Fatalf("addresses outside the subnet were recorded: %v", al.used)
	}
	al.mark(netip.MustParseAddr("10.0.0.128"), "old")
	al.mark(netip.MustParseAddr("10.0.0.130"), "older")
	if a := mustReserve(t, al, "new"); a != netip.MustParseAddr("10.0.0.129") {
		t.Errorf("reserve gave %s, want 10.0.0.129 (.128 and .130 are marked)", a)
	}
	if a := mustReserve(t, al, "new"); a != netip.MustParseAddr("10.0.0.131") {
		t.Errorf("reserve gave %s, want 10.0.0.131", a)
	}
}

func TestMacFor(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"172.17.0.2", "02:42:ac:11:00:02"}, // what Docker gives its first container
		{"10.99.128.0", "02:42:0a:63:80:00"},
		{"10.99.255.254", "02:42:0a:63:ff:fe"},
	} {
		mac := macFor(netip.MustParseAddr(tc.addr))
		if mac.String() != tc.want {
			t.Errorf("macFor(%s) = %s, want %s", tc.addr, mac, tc.want)
		}
		// Locally administered, unicast: never clashes with a vendor's MAC.
		if mac[0]&0x02 == 0 || mac[0]&0x01 != 0 {
			t.Errorf("macFor(%s) = %s is not a local unicast MAC", tc.addr, mac)
		}
		if _, err := net.ParseMAC(mac.String()); err != nil {
			t.Errorf("macFor(%s): %v", tc.addr, err)
		}
	}
}

func TestVethName(t *testing.T) {
	const id1 = "4f66ad1e2c3b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
	const id2 = "4f66ad1e2c3b0000000000000000000000000000000000000000000000000000"
	for _, tc := range []struct{ id, want string }{
		{id1, "wh4f66ad1e2c3b9"},
		{"abc", "whabc"},
		{"0123456789abc", "wh0123456789abc"},  // exactly 15
		{"0123456789abcd", "wh0123456789abc"}, // one too long
		{"", "wh"},
	} {
		got := vethName(tc.id)
		if got != tc.want {
			t.Errorf("vethName(%q) = %q, want %q", tc.id, got, tc.want)
		}
		if len(got) > 15 {
			t.Errorf("vethName(%q) = %q is longer than IFNAMSIZ-1", tc.id, got)
		}
	}
	// Two ids that share Docker's 12-character short id still get two names.
	if vethName(id1) == vethName(id2) {
		t.Errorf("ids %s and %s share the veth name %s", id1[:13], id2[:13], vethName(id1))
	}
}

func mustReserve(t *testing.T, al *allocator, owner string) netip.Addr {
	t.Helper()
	a, err := al.reserve(owner)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
