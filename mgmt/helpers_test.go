package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/store"
)

const testAdminToken = "test-admin-token-0123456789"

// recHooks records the hook calls, in order.
type recHooks struct {
	mu     sync.Mutex
	events []string
}

func (h *recHooks) FunctionChanged(tenant, name string) { h.add("fn " + tenant + "/" + name) }
func (h *recHooks) TenantDeleted(tenant string)         { h.add("tenant " + tenant) }

func (h *recHooks) add(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

// take returns the events so far and forgets them.
func (h *recHooks) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev := h.events
	h.events = nil
	return ev
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t     *testing.T
	echo  *echo.Echo
	st    *store.Store
	emb   *store.Embedded
	hooks *recHooks
	logs  *syncBuffer
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newEnv starts an embedded store, connects, configures the admin token and
// mounts the API at /api/v1 of an echo with errs.HTTPErrorHandler.
func newEnv(t *testing.T, cfg Config) *env {
	return newEnvWith(t, cfg, func(s Store) Store { return s })
}

// newEnvWith is newEnv with the Store the API sees wrapped by wrap.
func newEnvWith(t *testing.T, cfg Config, wrap func(Store) Store) *env {
	t.Helper()
	return newEnvFull(t, cfg, wrap, nil)
}

// newEnvFull is newEnvWith with cfg.Logs built over the env's store by mkLogs (when not nil).
func newEnvFull(t *testing.T, cfg Config, wrap func(Store) Store, mkLogs func(*store.Store) Logs) *env {
	t.Helper()
	ctx := testCtx(t)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	emb, err := store.StartEmbedded(ctx, t.TempDir(), "127.0.0.1:0", logger)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(emb.Close)
	st, err := store.Connect(ctx, emb.URI(), store.Options{
		MaxPoolSize: 4,
		SecretsKey:  bytes.Repeat([]byte{7}, 32),
	})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	if _, err := st.EnsureAdminToken(ctx, testAdminToken); err != nil {
		t.Fatalf("EnsureAdminToken: %v", err)
	}
	if mkLogs != nil {
		cfg.Logs = mkLogs(st)
	}
	hooks := &recHooks{}
	e := echo.New()
	e.HTTPErrorHandler = errs.HTTPErrorHandler(logger)
	New(wrap(st), hooks, cfg, logger).Register(e.Group("/api/v1"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	return &env{t: t, echo: e, st: st, emb: emb, hooks: hooks, logs: logs}
}

type resp struct {
	Code   int
	Header http.Header
	Body   []byte
}

// rawBody is a request body sent as is; any other body is sent as JSON.
type rawBody string

// do serves one request. body: nil (none), rawBody, or a value marshalled to JSON.
func (e *env) do(method, path, token string, body any) resp {
	e.t.Helper()
	return e.doHeaders(method, path, body, authHeader(token))
}

func authHeader(token string) map[string]string {
	if token == "" {
		return nil
	}
	return map[string]string{"Authorization": "Bearer " + token}
}

func (e *env) doHeaders(method, path string, body any, headers map[string]string) resp {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case rawBody:
		r = strings.NewReader(string(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("marshal body: %v", err)
		}
		r = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, "/api/v1"+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.echo.ServeHTTP(rec, req)
	out := resp{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	conform(e.t, method, req.URL.Path, out)
	return out
}

// want checks the status and decodes the body into out (when not nil).
func (r resp) want(t *testing.T, status int, out any) {
	t.Helper()
	if r.Code != status {
		t.Fatalf("status %d, want %d; body %s", r.Code, status, r.Body)
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			t.Fatalf("decode %s: %v", r.Body, err)
		}
	}
}

// wantErr checks an error answer: status, code, a one-sentence message.
func (r resp) wantErr(t *testing.T, status int, code string) errs.Body {
	t.Helper()
	if r.Code != status {
		t.Fatalf("status %d, want %d; body %s", r.Code, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want JSON", ct)
	}
	var raw map[string]any
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		t.Fatalf("error body %s: %v", r.Body, err)
	}
	if len(raw) != 2 {
		t.Errorf("error body %s: want exactly error and code", r.Body)
	}
	var b errs.Body
	_ = json.Unmarshal(r.Body, &b)
	if b.Code != code {
		t.Fatalf("code %q, want %q; body %s", b.Code, code, r.Body)
	}
	if b.Error == "" || !strings.HasSuffix(b.Error, ".") || b.Error[:1] != strings.ToUpper(b.Error[:1]) {
		t.Errorf("message %q is not a sentence", b.Error)
	}
	return b
}

// mustTenant creates a tenant through the API and returns its token.
func (e *env) mustTenant(name string) string {
	e.t.Helper()
	var out struct{ Name, Token string }
	e.do("POST", "/tenants", testAdminToken, map[string]string{"name": name}).want(e.t, http.StatusCreated, &out)
	if out.Name != name || out.Token == "" {
		e.t.Fatalf("create tenant: %+v", out)
	}
	return out.Token
}

type statusOut struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	Status  string `json:"status"`
	Modules []struct {
		Name, Version, Status string
	} `json:"modules"`
	UpdatedAt time.Time `json:"updated_at"`
}

type functionOut struct {
	Name         string            `json:"name"`
	Version      int               `json:"version"`
	Code         string            `json:"code"`
	Dependencies map[string]string `json:"dependencies"`
	Secrets      []string          `json:"secrets"`
	TimeoutMS    int               `json:"timeout_ms"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

type versionOut struct {
	Version      int               `json:"version"`
	CreatedAt    time.Time         `json:"created_at"`
	CodeSize     int               `json:"code_size"`
	Dependencies map[string]string `json:"dependencies"`
	Secrets      []string          `json:"secrets"`
	TimeoutMS    int               `json:"timeout_ms"`
}

// put stores a function and checks the status.
func (e *env) put(token, tenant, name string, body any, status int) statusOut {
	e.t.Helper()
	var out statusOut
	e.do("PUT", "/tenants/"+tenant+"/functions/"+name, token, body).want(e.t, status, &out)
	return out
}

// get returns a function as the API shows it.
func (e *env) get(token, tenant, name string) functionOut {
	e.t.Helper()
	var out functionOut
	e.do("GET", "/tenants/"+tenant+"/functions/"+name, token, nil).want(e.t, http.StatusOK, &out)
	return out
}

// wantHooks checks the hook calls since the last check.
func (e *env) wantHooks(want ...string) {
	e.t.Helper()
	got := e.hooks.take()
	if !slices.Equal(got, want) {
		e.t.Fatalf("hooks %q, want %q", got, want)
	}
}

// newRequest is a bodiless request bound to ctx.
func newRequest(ctx context.Context, method, path, token string) *http.Request {
	req := httptest.NewRequestWithContext(ctx, method, "/api/v1"+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

func serve(e *env, req *http.Request) resp {
	rec := httptest.NewRecorder()
	e.echo.ServeHTTP(rec, req)
	r := resp{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	conform(e.t, req.Method, req.URL.Path, r)
	return r
}
