package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
)

// Invariant: the hand-written name checks accept exactly what the documented
// patterns accept.
func TestValidNames(t *testing.T) {
	tenantRe := regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	nameRe := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`)
	cases := []string{"", "a", "A", "0", "-a", "_a", "a-b", "a_b", "aB", "a.b", "a/b", "é", "a b", "a\n",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65), "x-", "x_", "Zz9-_"}
	for _, s := range cases {
		if got, want := validTenant(s), tenantRe.MatchString(s); got != want {
			t.Errorf("validTenant(%q) = %v, pattern says %v", s, got, want)
		}
		if got, want := validName(s), nameRe.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, pattern says %v", s, got, want)
		}
	}
}

func FuzzValidNames(f *testing.F) {
	tenantRe := regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	nameRe := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`)
	f.Add("acme")
	f.Add("Hello_World-1")
	f.Fuzz(func(t *testing.T, s string) {
		if validTenant(s) != tenantRe.MatchString(s) || validName(s) != nameRe.MatchString(s) {
			t.Fatalf("%q: checks disagree with the patterns", s)
		}
	})
}

// proxyTo builds a node-like server in front of a runner listening on addr.
func proxyTo(t *testing.T, addr string) (*httptest.Server, *fakeContainers, *Proxy) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	portN, _ := strconv.Atoi(port)
	fc := &fakeContainers{ip: host}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := New(Config{ClaimTimeout: time.Second, DefaultTimeoutMS: 2000, MaxBodyBytes: 1 << 20, RunnerPort: portN},
		fakeFns{"acme/f": {Tenant: "acme", Name: "f", Version: 1}}, fc, logger)
	e := echo.New()
	e.HTTPErrorHandler = errs.HTTPErrorHandler(logger)
	p.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close)
	return srv, fc, p
}

// Invariant: a runner that closed an idle keep-alive connection costs a
// request without a body nothing (it is sent again on a fresh connection),
// and the container is not blamed.
func TestStaleIdleConnectionRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func(c net.Conn) {
				// Answer one request, then close the connection without
				// saying so: what a runner restarting its keep-alive does.
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}(c)
		}
	}()
	srv, fc, p := proxyTo(t, ln.Addr().String())
	for i := range 3 {
		resp, body := get(t, "GET", srv.URL+"/run/acme/f", nil, nil)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond) // let the close reach the proxy's side
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections for 3 requests", n)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.failed) != 0 || fc.suspected != 0 {
		t.Fatalf("a stale connection blamed the container: failed %v, suspected %d", fc.failed, fc.suspected)
	}
	_ = p
}

// Invariant: keep-alive connections to a runner are reused, one exchange at a
// time, and dropped when the container fails.
func TestConnectionReuse(t *testing.T) {
	var conns atomic.Int32
	rs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	rs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	rs.Start()
	defer rs.Close()
	srv, _, p := proxyTo(t, rs.Listener.Addr().String())
	for i := range 20 {
		var body io.Reader
		if i%2 == 1 {
			body = strings.NewReader("payload")
		}
		if resp, b := get(t, "POST", srv.URL+"/run/acme/f", body, nil); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections to the runner for 20 sequential requests, want 1", n)
	}
	if n := p.up.idleCount(); n != 1 {
		t.Fatalf("%d idle connections kept, want 1", n)
	}
	p.up.forget("c1")
	if n := p.up.idleCount(); n != 0 {
		t.Fatalf("%d idle connections after forget", n)
	}
}

// Invariant: request bodies of unknown length reach the runner whole
// (chunked), and hop-by-hop headers, including those the client names in
// Connection, do not.
func TestChunkedBodyAndHopHeaders(t *testing.T) {
	var gotBody string
	var gotHdr http.Header
	srv, _ := setup(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody, gotHdr = string(b), r.Header.Clone()
	})
	req, _ := http.NewRequest("POST", srv.URL+"/run/acme/f", io.MultiReader(strings.NewReader("part1-"), strings.NewReader("part2")))
	req.Header.Set("Connection", "X-Secret-Hop")
	req.Header.Set("X-Secret-Hop", "v")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Custom", "kept")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || gotBody != "part1-part2" {
		t.Fatalf("%d, runner got %q", resp.StatusCode, gotBody)
	}
	if gotHdr.Get("X-Secret-Hop") != "" || gotHdr.Get("Keep-Alive") != "" || gotHdr.Get("X-Custom") != "kept" {
		t.Fatalf("headers at the runner: %v", gotHdr)
	}
	if xff := gotHdr.Get("X-Forwarded-For"); xff != "203.0.113.7, 127.0.0.1" {
		t.Fatalf("X-Forwarded-For %q", xff)
	}
}

// Invariant: a response of unknown length is streamed to the client as it is
// written, and trailers pass through.
func TestStreamingAndTrailers(t *testing.T) {
	next := make(chan struct{})
	srv, _ := setup(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: one\n\n"))
		w.(http.Flusher).Flush()
		<-next
		_, _ = w.Write([]byte("data: two\n\n"))
		w.Header().Set("X-Sum", "2")
	})
	resp, err := http.Get(srv.URL + "/run/acme/dflt")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q %v: not streamed before the function finished", line, err)
	}
	close(next)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: two\n\n" || resp.Trailer.Get("X-Sum") != "2" {
		t.Fatalf("rest %q, trailer %v", rest, resp.Trailer)
	}
}

// Invariant: a runner that answers without reading a large body gets its
// answer through, and the connection is not reused mid-body.
func TestEarlyAnswer(t *testing.T) {
	srv, fc := setup(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(202)
		_, _ = w.Write([]byte("early"))
	})
	// setup's node limit is 1024 bytes; stay under it.
	for range 3 {
		resp, body := get(t, "POST", srv.URL+"/run/acme/f", strings.NewReader(strings.Repeat("x", 1000)), nil)
		if resp.StatusCode != 202 || body != "early" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.failed) != 0 {
		t.Fatalf("container failed: %v", fc.failed)
	}
}

// Invariant: a runner that dies mid-response has the client connection
// aborted (never a clean, truncated answer) and its container replaced.
func TestRunnerDiesMidResponse(t *testing.T) {
	srv, fc := setup(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	resp, err := http.Get(srv.URL + "/run/acme/f")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a cut response reached the client as complete")
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		fc.mu.Lock()
		n := len(fc.failed)
		fc.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container failed %d times, want 1", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fc.balanced(t)
}

// Invariant: the function's deadline holds after the answer has started: a
// runner that stalls mid-response has the client connection cut at the
// deadline (never held open, never a clean truncated answer), and the
// container is checked, not failed.
func TestDeadlineMidResponse(t *testing.T) {
	release := make(chan struct{})
	srv, fc := setup(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	start := time.Now()
	// The head may still sit in the server's buffer when the cut comes, so
	// the client sees the end at the head or in the body.
	resp, err := http.Get(srv.URL + "/run/acme/f") // TimeoutMS: 300
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a response cut at the deadline reached the client as complete")
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("cut after %v, want about the function's 300 ms", d)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.suspected != 1 || len(fc.failed) != 0 {
		t.Fatalf("suspected %d, failed %v: a timeout should have the container checked only", fc.suspected, fc.failed)
	}
}

// Invariant: a client that leaves ends the exchange with the runner at once:
// the runner's connection is closed (its request sees the end), it is not
// kept for reuse, and the container is not blamed.
func TestClientLeavingAbortsExchange(t *testing.T) {
	runnerSawEnd := make(chan time.Time, 1)
	srv, fc := setup(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		runnerSawEnd <- time.Now()
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/run/acme/dflt", nil) // TimeoutMS: 200 (default)
	time.AfterFunc(50*time.Millisecond, cancel)
	left := time.Now().Add(50 * time.Millisecond)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the request succeeded after the client left")
	}
	select {
	case at := <-runnerSawEnd:
		if at.Sub(left) > 120*time.Millisecond {
			t.Fatalf("the runner's exchange ended %v after the client left, at the deadline rather than at once", at.Sub(left))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the runner's exchange never ended")
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.suspected != 0 || len(fc.failed) != 0 {
		t.Fatalf("suspected %d, failed %v for a client that left", fc.suspected, fc.failed)
	}
}
