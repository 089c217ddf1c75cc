package cluster

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The two tests below run the generated configuration in a real HAProxy
// (skipped when it is not installed) against in-process backends.

// TestHAProxySlowChecksKeepNodeUp pins that a node answering /readyz slower
// than the check interval stays in rotation: on a busy or CPU-starved machine
// every node answers late, and an interval-sized check timeout would take
// them all out at once ("no server is available").
func TestHAProxySlowChecksKeepNodeUp(t *testing.T) {
	slow := newBackend(t, 400*time.Millisecond)
	h := startHAProxy(t, HealthCheck{Interval: 100 * time.Millisecond, Fall: 2, Rise: 2},
		[]Backend{{"slow", slow.Listener.Addr().String()}})
	time.Sleep(1500 * time.Millisecond) // several intervals, each check 4x longer than one
	st := h.servers(t)["slow"]
	if !st.Up() {
		t.Fatalf("a node whose checks take 400ms with a 100ms interval was marked %+v", st)
	}
	if resp := h.get(t); resp != http.StatusOK {
		t.Fatalf("request through HAProxy: %d", resp)
	}
}

// TestHAProxyRefusedConnectionMarksDown pins that a node whose port refuses
// connections leaves the rotation on the first refused request, long before
// its health checks would notice, and that the request itself is served by
// another node.
func TestHAProxyRefusedConnectionMarksDown(t *testing.T) {
	a, b := newBackend(t, 0), newBackend(t, 0)
	h := startHAProxy(t, HealthCheck{Interval: 10 * time.Second, Fall: 3, Rise: 2},
		[]Backend{{"a", a.Listener.Addr().String()}, {"b", b.Listener.Addr().String()}})
	for id, st := range h.servers(t) {
		if !st.Up() {
			t.Fatalf("%s starts %+v", id, st)
		}
	}
	b.Close() // the node dies: its port refuses connections
	start := time.Now()
	// Round robin: at least one of them goes to b, is refused, and waits
	// HAProxy's turn-around (min(timeout connect, 1 s)) before it is
	// redispatched to a.
	for i := range 4 {
		if code := h.get(t); code != http.StatusOK {
			t.Fatalf("request %d after b died: %d (not redispatched)", i, code)
		}
	}
	for h.servers(t)["b"].Up() {
		if time.Since(start) > 2*time.Second { // checks alone would need 3 x 10 s
			t.Fatalf("b still %+v 2s after refusing connections", h.servers(t)["b"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("b marked down %v after it died", time.Since(start).Round(time.Millisecond))
}

// newBackend is a node stand-in whose /readyz answers after delay.
func newBackend(t *testing.T, delay time.Duration) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			time.Sleep(delay)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

type haproxyRun struct{ url, stats string }

func startHAProxy(t *testing.T, check HealthCheck, backends []Backend) haproxyRun {
	t.Helper()
	bin, err := findHAProxy()
	if err != nil {
		t.Skip("haproxy not installed")
	}
	addrs := freeAddrs(t, 2)
	listen, stats := addrs[0], addrs[1]
	cfg, err := HAProxyConfig(HAProxySpec{Listen: listen, StatsListen: stats, Backends: backends, Check: check})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	h := haproxyRun{url: "http://" + listen, stats: "http://" + stats + "/stats"}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := ServersAt(context.Background(), h.stats); err == nil {
			return h
		} else if time.Now().After(deadline) {
			t.Fatalf("haproxy did not start: %v", err)
		}
	}
}

func (h haproxyRun) servers(t *testing.T) map[string]ServerState {
	t.Helper()
	st, err := ServersAt(context.Background(), h.stats)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (h haproxyRun) get(t *testing.T) int {
	t.Helper()
	// A fresh connection per request, so round robin sees every one.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(h.url + "/run/t/f")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// freeAddrs returns n distinct free loopback addresses. The listeners are
// held until all are known: one closed and then asked for again can come
// back as the same port, and HAProxy then binds two frontends to it.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}
