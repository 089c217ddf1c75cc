package node

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/config"
	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/mgmt"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bareNode is a node with its configuration and logger only: enough to
// assemble its HTTP surface without a store or an engine.
func bareNode(t *testing.T, args ...string) (*Node, *syncBuf) {
	t.Helper()
	cfg, err := config.Load(config.CmdServe, args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	return &Node{cfg: cfg, log: slog.New(slog.NewTextHandler(logs, nil))}, logs
}

// Invariant: every route the node registers under /api/v1 is in the OpenAPI
// document, and every documented operation is registered (the module
// builder's route excepted until it is merged: mgmt.ModuleRoute).
func TestRoutesMatchOpenAPI(t *testing.T) {
	n, _ := bareNode(t)
	e := n.newEcho()
	if p := mgmt.RouteProblems(e.Routes()); len(p) > 0 {
		t.Fatalf("the node's routes and openapi.json differ:\n%s", strings.Join(p, "\n"))
	}
	var api int
	for _, r := range e.Routes() {
		if strings.HasPrefix(r.Path, "/api/v1/") {
			api++
		}
	}
	if api < 15 {
		t.Fatalf("only %d /api/v1 routes: the check saw too little", api)
	}
}

type answer struct {
	code   int
	header http.Header
	body   errs.Body
	raw    string
}

func serveOn(e *echo.Echo, method, target, body string, header map[string]string) answer {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	a := answer{code: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &a.body)
	return a
}

// Invariant: the management API's middleware does what it promises: panics
// become a JSON 500 (stack logged), every answer has a request id (a
// caller's sane one is kept), bodies over the limit are refused with 413,
// a request past its timeout answers 503 request_timeout, live log streams
// and waiting PUTs get the time they need, and every request is logged once.
func TestAPIMiddleware(t *testing.T) {
	n, logs := bareNode(t, "--api-timeout", "150ms", "--max-code", "1k")
	e := echo.New()
	e.HTTPErrorHandler = errs.HTTPErrorHandler(n.log)
	n.useCommon(e)
	g := e.Group("/api/v1", n.apiMiddleware()...)
	g.GET("/panic", func(echo.Context) error { panic("kaboom") })
	g.GET("/slow", func(c echo.Context) error {
		<-c.Request().Context().Done() // like a store call bound to the request
		return c.Request().Context().Err()
	})
	g.POST("/echo", func(c echo.Context) error {
		b, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		return c.String(http.StatusOK, string(b))
	})
	deadline := func(c echo.Context) error {
		dl, ok := c.Request().Context().Deadline()
		if !ok {
			return c.String(http.StatusOK, "none")
		}
		return c.String(http.StatusOK, time.Until(dl).Round(50*time.Millisecond).String())
	}
	g.GET("/tenants/:tenant/logs", deadline)
	g.PUT("/tenants/:tenant/functions/:name", deadline)

	a := serveOn(e, "GET", "/api/v1/panic", "", nil)
	if a.code != 500 || a.body.Code != "internal" || a.body.Error != "Internal server error." {
		t.Fatalf("panic answered %d %s", a.code, a.raw)
	}
	if !strings.Contains(logs.String(), "kaboom") || !strings.Contains(logs.String(), "goroutine") {
		t.Fatalf("panic not logged with its stack:\n%s", logs.String())
	}
	rid := a.header.Get(echo.HeaderXRequestID)
	if len(rid) != 32 {
		t.Fatalf("request id %q", rid)
	}

	cases := []struct{ sent, want string }{
		{"trace-123.abc", "trace-123.abc"},
		{"has space", ""},
		{strings.Repeat("a", 129), ""},
		{"-leading-dash", ""},
		{"", ""},
	}
	for _, c := range cases {
		got := serveOn(e, "GET", "/healthz-missing", "", map[string]string{echo.HeaderXRequestID: c.sent}).header.Get(echo.HeaderXRequestID)
		if c.want != "" && got != c.want {
			t.Errorf("id %q answered %q, want it kept", c.sent, got)
		}
		if c.want == "" && (got == c.sent || len(got) != 32) {
			t.Errorf("id %q answered %q, want a new one", c.sent, got)
		}
	}

	small := strings.Repeat("x", 1000)
	if a := serveOn(e, "POST", "/api/v1/echo", small, nil); a.code != 200 || a.raw != small {
		t.Fatalf("small body: %d", a.code)
	}
	if a := serveOn(e, "POST", "/api/v1/echo", strings.Repeat("x", 2*1024+64<<10+1), nil); a.code != 413 || a.body.Code != "body_too_large" {
		t.Fatalf("oversized body: %d %s", a.code, a.raw)
	}

	start := time.Now()
	a = serveOn(e, "GET", "/api/v1/slow", "", nil)
	if took := time.Since(start); a.code != 503 || a.body.Code != "request_timeout" || a.header.Get("Retry-After") != "1" ||
		took < 150*time.Millisecond || took > 2*time.Second {
		t.Fatalf("slow request: %d %s after %v", a.code, a.raw, took)
	}

	if a := serveOn(e, "GET", "/api/v1/tenants/acme/logs", "", nil); a.raw != "none" {
		t.Fatalf("a live log stream got a deadline: %s", a.raw)
	}
	if a := serveOn(e, "GET", "/api/v1/tenants/acme/logs?follow=false", "", nil); a.raw != "150ms" {
		t.Fatalf("log history deadline: %s", a.raw)
	}
	if a := serveOn(e, "PUT", "/api/v1/tenants/acme/functions/f?wait=2s", "", nil); a.raw != "2.15s" {
		t.Fatalf("waiting PUT deadline: %s", a.raw)
	}

	if !strings.Contains(logs.String(), `msg="api request" method=GET route=/api/v1/slow status=503`) ||
		!strings.Contains(logs.String(), `msg="api request" method=POST route=/api/v1/echo status=413`) {
		t.Fatalf("access log missing:\n%s", logs.String())
	}

	n.draining.Store(true)
	if a := serveOn(e, "GET", "/api/v1/tenants/acme/logs", "", nil); a.code != 503 || a.body.Code != "draining" {
		t.Fatalf("while draining: %d %s", a.code, a.raw)
	}
}
