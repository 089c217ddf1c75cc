package fastpath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testHandler answers by path; every answer says which server took it.
func testHandler(who string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", who)
		switch strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api"), "/run/t/") {
		case "small": // no Content-Length set: the server computes it
			fmt.Fprintf(w, "hello %s", r.Host)
		case "json":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, `{"ok":true}`)
		case "big": // beyond the buffer: chunked
			io.WriteString(w, strings.Repeat("x", 10000))
		case "empty":
			w.WriteHeader(http.StatusNoContent)
		case "echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Len", fmt.Sprint(len(b)))
			w.Write(b)
		case "unread": // leaves the body for the server to drain
			io.WriteString(w, "not read")
		case "trailer":
			w.Header().Set("Trailer", "X-Sum")
			w.WriteHeader(200)
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		case "stream":
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			<-r.Context().Done() // until the client leaves
		case "abort":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "partial")
			panic(http.ErrAbortHandler)
		case "wait": // until the client leaves, then report it
			select {
			case <-r.Context().Done():
				gone.Add(1)
			case <-time.After(5 * time.Second):
			}
		default:
			http.Error(w, "nope", http.StatusNotFound)
		}
	})
}

var gone atomic.Int32

// start serves the fast path on loopback, with a fallback that tags its
// answers differently.
func start(t *testing.T) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: testHandler("fast"), Fallback: &http.Server{Handler: testHandler("nethttp")}}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx, ln)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s, ln.Addr().String()
}

// roundTrip writes raw requests on one connection and reads one response per
// request, in order.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, raw string, methods ...string) []*http.Response {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var out []*http.Response
	for _, m := range methods {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		for err == nil && resp.StatusCode == http.StatusContinue {
			resp, err = http.ReadResponse(br, &http.Request{Method: m})
		}
		if err != nil {
			t.Fatalf("response %d: %v", len(out), err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("body %d: %v", len(out), err)
		}
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		out = append(out, resp)
	}
	return out
}

func body(r *http.Response) string { b, _ := io.ReadAll(r.Body); return string(b) }

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// Invariant: the fast path frames responses as net/http does (length when
// known, chunked otherwise, no body where none is allowed, trailers), and
// serves many requests, pipelined ones too, on one connection.
func TestFastPathFramingAndKeepAlive(t *testing.T) {
	_, addr := start(t)
	c, br := dial(t, addr)
	req := func(m, path, extra string) string {
		return m + " " + path + " HTTP/1.1\r\nHost: h.example\r\n" + extra + "\r\n"
	}
	raw := req("GET", "/run/t/small", "") + req("GET", "/api/run/t/json", "") + req("GET", "/run/t/big", "") +
		req("GET", "/run/t/empty", "") + req("HEAD", "/run/t/small", "") + req("GET", "/run/t/trailer", "") +
		req("POST", "/run/t/echo", "Content-Length: 5\r\n") + "12345" +
		req("POST", "/run/t/echo", "Transfer-Encoding: chunked\r\n") + "3\r\nabc\r\n0\r\n\r\n" +
		req("POST", "/run/t/unread", "Content-Length: 3\r\n") + "xyz" +
		req("GET", "/run/t/small", "")
	rs := roundTrip(t, c, br, raw, "GET", "GET", "GET", "GET", "HEAD", "GET", "POST", "POST", "POST", "GET")
	for i, r := range rs {
		if r.Header.Get("X-Served-By") != "fast" {
			t.Errorf("response %d served by %q", i, r.Header.Get("X-Served-By"))
		}
		if r.Header.Get("Date") == "" {
			t.Errorf("response %d has no Date", i)
		}
	}
	if b := body(rs[0]); b != "hello h.example" || rs[0].ContentLength != int64(len(b)) || rs[0].Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("small: %q length %d type %q", b, rs[0].ContentLength, rs[0].Header.Get("Content-Type"))
	}
	if b := body(rs[1]); b != `{"ok":true}` || rs[1].Header.Get("Content-Type") != "application/json" {
		t.Errorf("json: %q %v", b, rs[1].Header)
	}
	if b := body(rs[2]); len(b) != 10000 || rs[2].ContentLength != -1 || len(rs[2].TransferEncoding) != 1 {
		t.Errorf("big: %d bytes, length %d, encoding %v", len(b), rs[2].ContentLength, rs[2].TransferEncoding)
	}
	if rs[3].StatusCode != 204 || body(rs[3]) != "" {
		t.Errorf("empty: %d", rs[3].StatusCode)
	}
	if rs[4].StatusCode != 200 || body(rs[4]) != "" {
		t.Errorf("HEAD: %d", rs[4].StatusCode)
	}
	if b := body(rs[5]); b != "body" || rs[5].Trailer.Get("X-Sum") != "42" {
		t.Errorf("trailer: %q %v", b, rs[5].Trailer)
	}
	if body(rs[6]) != "12345" || body(rs[7]) != "abc" || body(rs[8]) != "not read" || body(rs[9]) != "hello h.example" {
		t.Errorf("bodies: %q %q %q %q", body(rs[6]), body(rs[7]), body(rs[8]), body(rs[9]))
	}
}

// Invariant: whatever the fast path does not take (other paths, HTTP/1.0,
// Expect, a repeated Host, a head larger than its buffer) is net/http's, on
// the same connection, from the request's first byte.
func TestHandOffToNetHTTP(t *testing.T) {
	_, addr := start(t)
	cases := map[string]string{
		"other path": "GET /api/v1/tenants HTTP/1.1\r\nHost: h\r\n\r\n",
		"HTTP/1.0":   "GET /run/t/small HTTP/1.0\r\nHost: h\r\n\r\n",
		"expect":     "POST /run/t/echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
		"big head":   "GET /run/t/small HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 6000) + "\r\n\r\n",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			c, br := dial(t, addr)
			r := roundTrip(t, c, br, raw, "GET")[0]
			if r.Header.Get("X-Served-By") != "nethttp" {
				t.Fatalf("served by %q (status %d)", r.Header.Get("X-Served-By"), r.StatusCode)
			}
		})
	}
	t.Run("repeated host is refused by net/http", func(t *testing.T) {
		c, br := dial(t, addr)
		r := roundTrip(t, c, br, "GET /run/t/small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "GET")[0]
		if r.StatusCode != 400 {
			t.Fatalf("status %d", r.StatusCode)
		}
	})
	t.Run("a connection handed off keeps working", func(t *testing.T) {
		c, br := dial(t, addr)
		rs := roundTrip(t, c, br, "GET /run/t/small HTTP/1.1\r\nHost: h\r\n\r\nGET /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /run/t/small HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "GET", "GET")
		got := []string{rs[0].Header.Get("X-Served-By"), rs[1].Header.Get("X-Served-By"), rs[2].Header.Get("X-Served-By")}
		if strings.Join(got, ",") != "fast,nethttp,nethttp" || body(rs[2]) != "hello h" {
			t.Fatalf("served by %v", got)
		}
	})
	t.Run("a malformed head on a webhook path is a 400", func(t *testing.T) {
		c, br := dial(t, addr)
		r := roundTrip(t, c, br, "GET /run/t/small HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n", "GET")[0]
		if r.StatusCode != 400 {
			t.Fatalf("status %d", r.StatusCode)
		}
	})
}

// Invariant: a client that leaves while its request runs cancels the
// request's context (on any request of a connection); a streamed answer reaches the client before the handler
// ends; an aborted handler cuts the connection instead of completing.
func TestDisconnectStreamAndAbort(t *testing.T) {
	_, addr := start(t)
	before := gone.Load()
	c, br := dial(t, addr)
	// Not the connection's first request: the watch is set up per
	// connection and must work for every request on it.
	for range 2 {
		roundTrip(t, c, br, "GET /run/t/small HTTP/1.1\r\nHost: h\r\n\r\n", "GET")
	}
	io.WriteString(c, "GET /run/t/wait HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(2 * watchAfter)
	c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for gone.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the handler never saw its client leave")
		}
		time.Sleep(5 * time.Millisecond)
	}

	c2, br2 := dial(t, addr)
	io.WriteString(c2, "GET /run/t/stream HTTP/1.1\r\nHost: h\r\n\r\n")
	_ = c2.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(br2, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("streamed part: %q %v", buf, err)
	}
	c2.Close() // ends the stream handler through its context

	c3, br3 := dial(t, addr)
	io.WriteString(c3, "GET /run/t/abort HTTP/1.1\r\nHost: h\r\n\r\n")
	_ = c3.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err = http.ReadResponse(br3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Fatalf("an aborted response read as complete: %q", b)
	}
}

// Invariant: Shutdown lets a request under way finish, closes idle
// connections, and Serve returns ErrServerClosed.
func TestShutdownDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/run/t/slow" {
			<-release
		}
		io.WriteString(w, "done")
	})
	s := &Server{Handler: h, Fallback: &http.Server{Handler: h}}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	idle, ibr := dial(t, ln.Addr().String())
	roundTrip(t, idle, ibr, "GET /run/t/x HTTP/1.1\r\nHost: h\r\n\r\n", "GET")
	busy, bbr := dial(t, ln.Addr().String())
	io.WriteString(busy, "GET /run/t/slow HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(50 * time.Millisecond)

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background(), ln) }()
	_ = idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := ibr.ReadByte(); err == nil {
		t.Fatal("idle connection still open after Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request under way", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	_ = busy.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bbr, nil)
	if err != nil || body(resp) != "done" {
		t.Fatalf("in-flight request: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestEligibleAndHeadEnd(t *testing.T) {
	for head, want := range map[string]bool{
		"GET /run/a/b HTTP/1.1\r\nHost: x\r\n":                                                     true,
		"POST /api/run/a/b?q=1 HTTP/1.1\r\nhost: x:80\r\n":                                         true,
		"GET /run/a/b HTTP/1.1\n":                                                                  false, // no Host
		"GET /api/v1/x HTTP/1.1\r\nHost: x\r\n":                                                    false,
		"GET /run/a/b HTTP/1.0\r\nHost: x\r\n":                                                     false,
		"GET /run/a/b HTTP/1.1\r\nHost: x\r\nHost: y\r\n":                                          false,
		"GET /run/a/b HTTP/1.1\r\nHost: x y\r\n":                                                   false,
		"GET /run/a/b HTTP/1.1\r\nHost: x\r\nExpect: 100-c\r\n":                                    false,
		"POST /run/a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n":                               true,
		"POST /run/a/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n":                      true,
		"POST /run/a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n": false,
		"POST /run/a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 3\r\n":          false,
		"GET  /run/a/b HTTP/1.1\r\nHost: x\r\n":                                                    false,
		"GET /run/a/b HTTP/1.1 extra\r\nHost: x\r\n":                                               false,
	} {
		if got := eligible([]byte(head), nil); got != want {
			t.Errorf("eligible(%q) = %v, want %v", head, got, want)
		}
	}
	for in, want := range map[string]int{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest": 27,
		"GET / HTTP/1.1\nHost: x\n\nrest":       24,
		"GET / HTTP/1.1\r\nHost: x\r\n":         -1,
		"":                                      -1,
	} {
		if got := headEnd([]byte(in)); got != want {
			t.Errorf("headEnd(%q) = %d, want %d", in, got, want)
		}
	}
}
