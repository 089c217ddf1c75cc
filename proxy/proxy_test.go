package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/handler"
	"github.com/wharfhq/wharf/pool"
)

type fakeFns map[string]*catalog.Function

func (f fakeFns) Get(_ context.Context, tenant, name string) (*catalog.Function, error) {
	if fn, ok := f[tenant+"/"+name]; ok {
		return fn, nil
	}
	if tenant == "broken" {
		return nil, errors.New("store down")
	}
	return nil, catalog.ErrNotFound
}

type fakeContainers struct {
	ip         string
	mu         sync.Mutex
	acquireErr error
	failed     []string
	suspected  int
	provisions int
	released   int
	acquired   int
}

// balanced asserts every hold taken was released, whatever the outcome.
func (f *fakeContainers) balanced(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.acquired == 0 || f.acquired != f.released {
		t.Fatalf("%d holds taken, %d released", f.acquired, f.released)
	}
}

func (f *fakeContainers) Warm(string) *handler.Assignment { return nil }

func (f *fakeContainers) Acquire(context.Context, string) (*handler.Assignment, bool, error) {
	if f.acquireErr != nil {
		return nil, true, f.acquireErr
	}
	f.mu.Lock()
	f.acquired++
	f.mu.Unlock()
	return &handler.Assignment{Tenant: "acme", C: &pool.Container{ID: "c1", IP: f.ip}}, false, nil
}
func (f *fakeContainers) Provision(*handler.Assignment, *catalog.Function) error {
	f.mu.Lock()
	f.provisions++
	f.mu.Unlock()
	return nil
}
func (f *fakeContainers) Release(*handler.Assignment) {
	f.mu.Lock()
	f.released++
	f.mu.Unlock()
}
func (f *fakeContainers) Fail(_ *handler.Assignment, reason string) {
	f.mu.Lock()
	f.failed = append(f.failed, reason)
	f.mu.Unlock()
}
func (f *fakeContainers) Suspect(*handler.Assignment) {
	f.mu.Lock()
	f.suspected++
	f.mu.Unlock()
}

// runner stands in for a container's runner on loopback.
func setup(t *testing.T, backend http.HandlerFunc) (*httptest.Server, *fakeContainers) {
	t.Helper()
	rs := httptest.NewServer(backend)
	t.Cleanup(rs.Close)
	host, port, _ := net.SplitHostPort(rs.Listener.Addr().String())
	portN, _ := strconv.Atoi(port)
	fc := &fakeContainers{ip: host}
	fns := fakeFns{
		"acme/f":    {Tenant: "acme", Name: "f", Version: 3, TimeoutMS: 300},
		"acme/dflt": {Tenant: "acme", Name: "dflt", Version: 1},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := New(Config{ClaimTimeout: time.Second, DefaultTimeoutMS: 200, MaxBodyBytes: 1024, RunnerPort: portN}, fns, fc, logger)
	e := echo.New()
	e.HTTPErrorHandler = errs.HTTPErrorHandler(logger)
	p.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close)
	return srv, fc
}

func get(t *testing.T, method, url string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Invariant: the runner gets the webtask path, the routing header, the
// request's id exactly once (never a client's other X-Request-Id values), and
// never a client's own x-wharf-* headers; its answer and headers pass through.
func TestForwarding(t *testing.T) {
	var got *http.Request
	var gotBody string
	srv, _ := setup(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Set("X-Wt-Response-Source", "webtask")
		w.WriteHeader(201)
		_, _ = w.Write([]byte("made"))
	})
	resp, body := get(t, "POST", srv.URL+"/run/acme/f/a/b?x=1", strings.NewReader("payload"),
		map[string]string{"X-Wharf-Route": "evil@1", "X-Wharf-Secret": "forged", "X-Request-Id": "!not a token"})
	if resp.StatusCode != 201 || body != "made" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	if resp.Header.Values("X-Wt-Response-Source")[0] != "webtask" || len(resp.Header.Values("X-Wt-Response-Source")) != 1 {
		t.Fatalf("response source %v", resp.Header.Values("X-Wt-Response-Source"))
	}
	if got.URL.Path != "/api/run/acme/f/a/b" || got.URL.RawQuery != "x=1" || gotBody != "payload" {
		t.Fatalf("runner saw %s?%s body %q", got.URL.Path, got.URL.RawQuery, gotBody)
	}
	if route := got.Header.Values("X-Wharf-Route"); len(route) != 1 || route[0] != "f@3" {
		t.Fatalf("routing header %v", got.Header)
	}
	if rid := got.Header.Values("X-Request-Id"); len(rid) != 1 || rid[0] != resp.Header.Get("X-Request-Id") || rid[0] == "!not a token" {
		t.Fatalf("runner's X-Request-Id %q, the client's answer has %q", rid, resp.Header.Get("X-Request-Id"))
	}
	if got.Header.Get("X-Wharf-Secret") != "" {
		t.Fatal("a client's x-wharf-* header reached the runner")
	}
	// The /api/run alias maps to the same path.
	if resp, _ := get(t, "GET", srv.URL+"/api/run/acme/f", nil, nil); resp.StatusCode != 201 || got.URL.Path != "/api/run/acme/f" {
		t.Fatalf("alias: %d %s", resp.StatusCode, got.URL.Path)
	}
}

func TestErrorMapping(t *testing.T) {
	hang := make(chan struct{})
	srv, fc := setup(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("X-Wharf-Route") {
		case "f@3", "dflt@1":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
	})
	// Registered after setup's, so it runs first: the stand-in runner's
	// handlers must return before its server can close.
	t.Cleanup(func() { close(hang) })
	cases := []struct {
		name, method, path string
		body               io.Reader
		status             int
		code               string
	}{
		{"unknown function", "GET", "/run/acme/nope", nil, 404, "function_not_found"},
		{"invalid tenant name", "GET", "/run/ACME/f", nil, 404, "function_not_found"},
		{"store down", "GET", "/run/broken/f", nil, 503, "store_unavailable"},
		{"timeout", "GET", "/run/acme/f", nil, 504, "function_timeout"},
		{"default timeout", "GET", "/run/acme/dflt", nil, 504, "function_timeout"},
		{"declared body too large", "POST", "/run/acme/f", strings.NewReader(strings.Repeat("x", 2048)), 413, "body_too_large"},
		// No Content-Length: the limit trips while the body streams to the runner.
		{"streamed body too large", "POST", "/run/acme/f", io.MultiReader(strings.NewReader(strings.Repeat("x", 4096))), 413, "body_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := get(t, c.method, srv.URL+c.path, c.body, nil)
			if resp.StatusCode != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, c.status, c.code)
			}
			if resp.Header.Get("X-Wt-Response-Source") != "proxy" {
				t.Fatalf("response source %q", resp.Header.Get("X-Wt-Response-Source"))
			}
		})
	}
	if !strings.Contains(func() string { _, b := get(t, "GET", srv.URL+"/run/acme/dflt", nil, nil); return b }(), "200 ms") {
		t.Fatal("504 message does not state the effective (default) timeout")
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.suspected == 0 {
		t.Fatal("a timeout did not ask the handler to check the runner")
	}
	if len(fc.failed) != 0 {
		t.Fatalf("timeouts or client errors failed the container: %v", fc.failed)
	}
	fc.mu.Unlock()
	fc.balanced(t)
	fc.mu.Lock()
}

// Invariant: a runner that is gone answers 502 and the container is dropped.
func TestDeadRunner502(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ln.Close() // nobody listens on this port now
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	portN, _ := strconv.Atoi(port)
	fc := &fakeContainers{ip: "127.0.0.1"}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := New(Config{RunnerPort: portN}, fakeFns{"acme/f": {Tenant: "acme", Name: "f", Version: 1}}, fc, logger)
	e := echo.New()
	e.HTTPErrorHandler = errs.HTTPErrorHandler(logger)
	p.Register(e)
	dead := httptest.NewServer(e)
	defer dead.Close()
	resp, body := get(t, "GET", dead.URL+"/run/acme/f", nil, nil)
	if resp.StatusCode != 502 || !strings.Contains(body, "container_failed") {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.failed) != 1 {
		t.Fatalf("container dropped %d times, want 1", len(fc.failed))
	}
	fc.mu.Unlock()
	fc.balanced(t)
	fc.mu.Lock()
}

// Invariant: when no container can be had, the answer is the handler's 503
// with Retry-After, and nothing is provisioned.
func TestNoContainer503(t *testing.T) {
	srv, fc := setup(t, func(w http.ResponseWriter, r *http.Request) {})
	fc.acquireErr = errs.Unavailable("no_container", 1, nil, "No container.")
	resp, body := get(t, "GET", srv.URL+"/run/acme/f", nil, nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "no_container") {
		t.Fatalf("got %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if fc.provisions != 0 {
		t.Fatal("provisioned without a container")
	}
}

// Invariant: a function's own body limits apply when lower than the node's,
// and never raise them.
func TestPerFunctionBodyLimits(t *testing.T) {
	rs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(strings.Repeat("r", 300)))
	}))
	defer rs.Close()
	host, port, _ := net.SplitHostPort(rs.Listener.Addr().String())
	portN, _ := strconv.Atoi(port)
	fc := &fakeContainers{ip: host}
	fns := fakeFns{
		"acme/small": {Tenant: "acme", Name: "small", Version: 1, MaxRequestBytes: 100, MaxResponseBytes: 200},
		"acme/big":   {Tenant: "acme", Name: "big", Version: 1, MaxRequestBytes: 1 << 30, MaxResponseBytes: 1 << 30},
		"acme/dflt":  {Tenant: "acme", Name: "dflt", Version: 1},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := New(Config{MaxBodyBytes: 1000, MaxResponseBytes: 1000, RunnerPort: portN}, fns, fc, logger)
	defer p.Close()
	e := echo.New()
	e.HTTPErrorHandler = errs.HTTPErrorHandler(logger)
	p.Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	cases := []struct {
		fn     string
		body   int
		status int
		code   string
	}{
		{"small", 50, 502, "response_too_large"}, // 300-byte answer over its 200
		{"small", 150, 413, "body_too_large"},    // over its 100
		{"dflt", 150, 200, ""},                   // the node's 1000
		{"big", 1500, 413, "body_too_large"},     // cannot raise the node's 1000
		{"big", 500, 200, ""},
	}
	for _, c := range cases {
		resp, body := get(t, "POST", srv.URL+"/run/acme/"+c.fn, strings.NewReader(strings.Repeat("x", c.body)), nil)
		if resp.StatusCode != c.status || (c.code != "" && !strings.Contains(body, c.code)) {
			t.Errorf("%s with %d bytes: %d %s, want %d %s", c.fn, c.body, resp.StatusCode, body, c.status, c.code)
		}
	}
}
