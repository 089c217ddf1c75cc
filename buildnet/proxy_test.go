package buildnet

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTarget(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://registry.npmjs.org/", "registry.npmjs.org:443"},
		{"https://Registry.NPMJS.org./", "registry.npmjs.org:443"},
		{"http://10.0.0.5:4873", "10.0.0.5:4873"},
		{"http://npm.internal/some/path/", "npm.internal:80"},
		{"https://[fd00::5]:8443/", "[fd00::5]:8443"},
		{"registry.npmjs.org", ""},
		{"ftp://x/", ""},
		{"https:///", ""},
	} {
		got, err := Target(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("Target(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestAllowed(t *testing.T) {
	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	const npm = "registry.npmjs.org:443"
	const local = "10.0.0.5:4873"
	for _, tc := range []struct {
		name      string
		target    string
		method    string
		url       *url.URL
		authority string
		ok        bool
	}{
		{"connect to the registry", npm, "CONNECT", nil, "registry.npmjs.org:443", true},
		{"connect, other case and root dot", npm, "CONNECT", nil, "REGISTRY.npmjs.org.:443", true},
		{"connect to another host", npm, "CONNECT", nil, "example.com:443", false},
		{"connect to the registry's other port", npm, "CONNECT", nil, "registry.npmjs.org:22", false},
		{"connect to a look-alike", npm, "CONNECT", nil, "registry.npmjs.org.evil.example:443", false},
		{"connect to metadata", npm, "CONNECT", nil, "169.254.169.254:80", false},
		{"connect without a port", npm, "CONNECT", nil, "registry.npmjs.org", false},
		{"plain http to the same host:port (one destination still)", npm, "GET", u("http://registry.npmjs.org:443/ms"), "", true},
		{"plain http to the registry's host on port 80", npm, "GET", u("http://registry.npmjs.org/ms"), "", false},
		{"private registry, exactly", local, "GET", u("http://10.0.0.5:4873/ms"), "", true},
		{"private registry, connect", local, "CONNECT", nil, "10.0.0.5:4873", true},
		{"private registry's neighbour", local, "GET", u("http://10.0.0.6:4873/ms"), "", false},
		{"private registry's other port", local, "GET", u("http://10.0.0.5:22/"), "", false},
		{"default port of http", "npm.internal:80", "GET", u("http://npm.internal/ms"), "", true},
		{"https in absolute form", "npm.internal:443", "GET", u("https://npm.internal/ms"), "", false},
		{"origin form (the proxy itself)", local, "GET", u("/ms"), "10.0.0.5:4873", false},
		{"credentials in the URL", local, "GET", u("http://user:pw@10.0.0.5:4873/ms"), "", false},
	} {
		if got := Allowed(tc.target, tc.method, tc.url, tc.authority); got != tc.ok {
			t.Errorf("%s: Allowed = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// listener accepts TCP connections on loopback and echoes what it reads,
// counting connections.
func echoServer(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String(), accepted
}

func startProxy(t *testing.T, registry string) (*Proxy, string) {
	t.Helper()
	p, err := NewProxy(registry, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.Listener.Addr().String()
}

// connectVia opens a CONNECT tunnel to authority through the proxy and
// returns the connection and the status line.
func connectVia(t *testing.T, proxy, authority string) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	return c, br, resp.StatusCode
}

// Invariant: a tunnel opens to the registry's host:port and carries bytes
// both ways; any other destination is refused with 403 before the proxy
// dials anything; closing the tunnels ends the open ones.
func TestProxyTunnel(t *testing.T) {
	registry, regHits := echoServer(t)
	other, otherHits := echoServer(t)
	p, addr := startProxy(t, "https://"+registry+"/")

	c, br, code := connectVia(t, addr, registry)
	if code != http.StatusOK {
		t.Fatalf("CONNECT to the registry: %d", code)
	}
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo through the tunnel: %q %v", line, err)
	}

	for _, dest := range []string{other, "localhost:" + strings.Split(registry, ":")[1], "169.254.169.254:80"} {
		if _, _, code := connectVia(t, addr, dest); code != http.StatusForbidden {
			t.Errorf("CONNECT %s: %d, want 403", dest, code)
		}
	}
	if otherHits.Load() != 0 || regHits.Load() != 1 {
		t.Fatalf("connections: registry %d (want 1), other %d (want 0)", regHits.Load(), otherHits.Load())
	}

	p.CloseTunnels()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the tunnel is still open after CloseTunnels")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the tunnel is still open after CloseTunnels (read timed out)")
	}
}

// Invariant: for an http:// registry, requests in absolute form for its
// URLs are forwarded (proxy headers dropped); others answer 403.
func TestProxyForwardsPlainHTTP(t *testing.T) {
	var seenAuth atomic.Value
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenAuth.Store(r.Header.Get("Proxy-Authorization"))
		fmt.Fprintf(w, "package %s", r.URL.Path)
	}))
	defer reg.Close()
	otherHit := atomic.Bool{}
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { otherHit.Store(true) }))
	defer other.Close()
	_, addr := startProxy(t, reg.URL+"/")
	proxyURL, _ := url.Parse("http://" + addr)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}

	req, _ := http.NewRequest("GET", reg.URL+"/ms", nil)
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "package /ms" {
		t.Fatalf("through the proxy: %d %q", resp.StatusCode, body)
	}
	if v, _ := seenAuth.Load().(string); v != "" {
		t.Fatalf("the registry saw Proxy-Authorization %q", v)
	}

	resp, err = client.Get(other.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || otherHit.Load() {
		t.Fatalf("other host: %d, reached=%v", resp.StatusCode, otherHit.Load())
	}
	resp, err = http.Get("http://" + addr + "/ms") // the proxy asked as a server
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("origin-form request: %d", resp.StatusCode)
	}
}
