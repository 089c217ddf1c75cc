package netattach

import "testing"

func TestResolvConf(t *testing.T) {
	const header = "# Written by Wharf from the host's resolv.conf.\n"
	const fallback = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
	for _, tc := range []struct{ name, host, want string }{
		{"empty", "", fallback},
		{"only comments", "# nameserver 1.1.1.1\n; nameserver 9.9.9.9\n", fallback},
		{"systemd-resolved stub",
			"# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
			fallback + "options edns0 trust-ad\nsearch lan\n"},
		{"other loopback", "nameserver 127.0.0.1\nnameserver 127.1.2.3\n", fallback},
		{"unspecified", "nameserver 0.0.0.0\n", fallback},
		{"ipv6 only", "nameserver 2001:4860:4860::8888\nnameserver ::1\nnameserver fe80::1%eth0\n", fallback},
		{"ipv4 kept, ipv6 and loopback dropped",
			"nameserver 127.0.0.53\nnameserver 2606:4700:4700::1111\nnameserver 192.168.1.1\nnameserver 1.1.1.1\n",
			"nameserver 192.168.1.1\nnameserver 1.1.1.1\n"},
		{"search domain options kept in order",
			"domain corp.example\nnameserver 10.0.0.2\nsearch corp.example example\noptions ndots:2 timeout:1\n",
			"nameserver 10.0.0.2\ndomain corp.example\nsearch corp.example example\noptions ndots:2 timeout:1\n"},
		{"whitespace normalised",
			"  nameserver\t10.0.0.2  \n\tsearch   a.example\t b.example\n",
			"nameserver 10.0.0.2\nsearch a.example b.example\n"},
		{"comments and junk ignored",
			"# comment\n;comment\n#nameserver 10.1.1.1\nnameserver not-an-address\nsortlist 10.0.0.0\nnameserver\nsearch\nnameserver 9.9.9.9 # trailing\n",
			"nameserver 9.9.9.9\n"},
		{"no trailing newline", "nameserver 10.0.0.2", "nameserver 10.0.0.2\n"},
		{"crlf", "nameserver 10.0.0.2\r\nsearch lan\r\n", "nameserver 10.0.0.2\nsearch lan\n"},
	} {
		got := string(resolvConf([]byte(tc.host)))
		if got != header+tc.want {
			t.Errorf("%s: resolvConf(%q) =\n%s\nwant\n%s", tc.name, tc.host, got, header+tc.want)
		}
	}
}
