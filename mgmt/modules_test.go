package mgmt

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/modstore"
	"github.com/wharfhq/wharf/npmspec"
)

// fakeModules stands in for the node's module service (speed); the real one
// is exercised end to end by the integration suite.
type fakeModules struct {
	mu       sync.Mutex
	st       map[string]modstore.Status
	requests int
}

func newFakeModules() *fakeModules { return &fakeModules{st: map[string]modstore.Status{}} }

func (f *fakeModules) set(r string, st modstore.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ref, _ := npmspec.ParseRef(r)
	st.Name, st.Version = ref.Name, ref.Version
	f.st[r] = st
}

func (f *fakeModules) Request(ctx context.Context, refs []npmspec.Ref) ([]modstore.Status, error) {
	f.mu.Lock()
	f.requests++
	for _, r := range refs {
		if _, ok := f.st[r.String()]; !ok {
			f.st[r.String()] = modstore.Status{Name: r.Name, Version: r.Version, Status: modstore.StatusBuilding}
		}
	}
	f.mu.Unlock()
	return f.States(ctx, refs)
}

func (f *fakeModules) States(_ context.Context, refs []npmspec.Ref) ([]modstore.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]modstore.Status, len(refs))
	for i, r := range refs {
		out[i] = f.st[r.String()]
	}
	return out, nil
}

func (f *fakeModules) Wait(ctx context.Context, refs []npmspec.Ref) ([]modstore.Status, error) {
	for {
		sts, _ := f.States(ctx, refs)
		if allFinal(sts) || ctx.Err() != nil {
			return sts, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeModules) Status(_ context.Context, r npmspec.Ref) (modstore.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.st[r.String()]
	if !ok {
		return modstore.Status{}, modstore.ErrNotFound
	}
	return st, nil
}

func newModulesEnv(t *testing.T) (*env, *fakeModules) {
	mods := newFakeModules()
	e := newEnv(t, Config{})
	// The same store and hooks, served by an API that has a module service.
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	api := New(e.st, e.hooks, Config{}, logger)
	api.UseModules(mods)
	e.echo = echo.New()
	e.echo.HTTPErrorHandler = errs.HTTPErrorHandler(logger)
	api.Register(e.echo.Group("/api/v1"))
	return e, mods
}

type moduleOut struct {
	Name, Version, Status, Error string
}

type statusWithErrors struct {
	Name    string      `json:"name"`
	Version int         `json:"version"`
	Status  string      `json:"status"`
	Modules []moduleOut `json:"modules"`
}

func TestPutWithModules(t *testing.T) {
	e, mods := newModulesEnv(t)
	acme := e.mustTenant("acme")
	deps := map[string]string{"ms": "2.1.3", "lodash": "4.17.21"}

	var st statusWithErrors
	e.do("PUT", "/tenants/acme/functions/f", acme, map[string]any{"code": "x", "dependencies": deps}).want(t, http.StatusCreated, &st)
	if st.Status != "building" || len(st.Modules) != 2 || st.Modules[0].Name != "lodash" || st.Modules[1].Status != "building" {
		t.Fatalf("PUT = %+v", st)
	}
	e.wantHooks("fn acme/f")

	// ?wait= returns as soon as the builds are final.
	go func() {
		time.Sleep(50 * time.Millisecond)
		mods.set("ms@2.1.3", modstore.Status{Status: modstore.StatusReady})
		mods.set("lodash@4.17.21", modstore.Status{Status: modstore.StatusReady})
	}()
	start := time.Now()
	e.do("PUT", "/tenants/acme/functions/f?wait=30s", acme, map[string]any{"code": "y", "dependencies": deps}).want(t, http.StatusOK, &st)
	if st.Status != "ready" || st.Version != 2 || time.Since(start) > 10*time.Second {
		t.Fatalf("PUT ?wait = %+v after %v", st, time.Since(start))
	}
	// ?wait= that runs out answers the state then, not an error.
	mods.set("debug@4.3.4", modstore.Status{Status: modstore.StatusBuilding})
	e.do("PUT", "/tenants/acme/functions/g?wait=50ms", acme, map[string]any{"code": "y", "dependencies": map[string]string{"debug": "4.3.4"}}).
		want(t, http.StatusCreated, &st)
	if st.Status != "building" {
		t.Fatalf("PUT ?wait ran out: %+v", st)
	}
	// A failed module fails the function, with the reason.
	mods.set("nope@1.0.0", modstore.Status{Status: modstore.StatusFailed, Error: "npm install failed (exit 1): E404"})
	e.do("PUT", "/tenants/acme/functions/h", acme, map[string]any{"code": "y", "dependencies": map[string]string{"nope": "1.0.0", "ms": "2.1.3"}}).
		want(t, http.StatusCreated, &st)
	if st.Status != "failed" || st.Modules[1].Error != "npm install failed (exit 1): E404" || st.Modules[0].Error != "" {
		t.Fatalf("PUT with a failed module = %+v", st)
	}

	// The list shows each function's status.
	var list []functionListItem
	e.do("GET", "/tenants/acme/functions", acme, nil).want(t, http.StatusOK, &list)
	got := map[string]string{}
	for _, f := range list {
		got[f.Name] = f.Status
	}
	if got["f"] != "ready" || got["g"] != "building" || got["h"] != "failed" {
		t.Fatalf("list statuses %v", got)
	}

	// Rollback to a version with dependencies works and reports their status.
	e.do("PUT", "/tenants/acme/functions/f", acme, map[string]any{"code": "noDeps"}).want(t, http.StatusOK, &st)
	if st.Status != "ready" || len(st.Modules) != 0 {
		t.Fatalf("PUT without deps = %+v", st)
	}
	e.do("POST", "/tenants/acme/functions/f/rollback?wait=1s", acme, map[string]int{"version": 2}).want(t, http.StatusOK, &st)
	if st.Version != 4 || st.Status != "ready" || len(st.Modules) != 2 {
		t.Fatalf("rollback = %+v", st)
	}
	if fv := e.get(acme, "acme", "f"); fv.Dependencies["ms"] != "2.1.3" || fv.Code != "y" {
		t.Fatalf("after rollback: %+v", fv)
	}
}

// Invariant: a request that fails validation enqueues nothing.
func TestPutBadDependencyEnqueuesNothing(t *testing.T) {
	e, mods := newModulesEnv(t)
	acme := e.mustTenant("acme")
	e.do("PUT", "/tenants/acme/functions/f", acme, map[string]any{"code": "x", "dependencies": map[string]string{"ms": "2.1.3", "lodash": "^4"}}).
		wantErr(t, http.StatusBadRequest, codeInvalidDependency)
	e.do("PUT", "/tenants/acme/functions/f", acme, map[string]any{"code": "", "dependencies": map[string]string{"ms": "2.1.3"}}).
		wantErr(t, http.StatusBadRequest, codeMissingCode)
	if mods.requests != 0 {
		t.Fatalf("%d enqueue requests for invalid PUTs", mods.requests)
	}
}

func TestGetModule(t *testing.T) {
	e, mods := newModulesEnv(t)
	acme := e.mustTenant("acme")
	built := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mods.set("ms@2.1.3", modstore.Status{Status: modstore.StatusReady, Attempts: 1, Result: &modstore.Result{
		Status: modstore.StatusReady, SHA256: strings.Repeat("a", 64), Size: 100, Files: 4, Packages: 1, BuiltAt: built, Log: "added 1 package"}})
	mods.set("@types/node@20.1.0", modstore.Status{Status: modstore.StatusBuilding, Attempts: 2, Error: "ETIMEDOUT"})
	mods.set("nope@1.0.0", modstore.Status{Status: modstore.StatusFailed, Attempts: 1, Error: "E404", Log: "npm error 404 Not Found", Result: &modstore.Result{
		Status: modstore.StatusFailed, Error: "E404", Log: "npm error 404 Not Found", BuiltAt: built}})

	var d moduleDetail
	e.do("GET", "/modules/ms@2.1.3", acme, nil).want(t, http.StatusOK, &d)
	if d.Status != "ready" || d.SHA256 == "" || d.Size != 100 || d.Log != "" || d.BuiltAt == nil || !d.BuiltAt.Equal(built) {
		t.Fatalf("ready module: %+v", d)
	}
	// Any valid token, the admin's too; scoped names raw or escaped.
	for _, path := range []string{"/modules/@types/node@20.1.0", "/modules/%40types%2Fnode@20.1.0"} {
		d = moduleDetail{}
		e.do("GET", path, testAdminToken, nil).want(t, http.StatusOK, &d)
		if d.Name != "@types/node" || d.Status != "building" || d.Attempts != 2 || d.Error != "ETIMEDOUT" {
			t.Fatalf("%s: %+v", path, d)
		}
	}
	d = moduleDetail{}
	e.do("GET", "/modules/nope@1.0.0", acme, nil).want(t, http.StatusOK, &d)
	if d.Status != "failed" || d.Log != "npm error 404 Not Found" || d.Error != "E404" {
		t.Fatalf("failed module: %+v", d)
	}
	e.do("GET", "/modules/other@1.0.0", acme, nil).wantErr(t, http.StatusNotFound, codeModuleNotFound)
	for _, bad := range []string{"/modules/ms", "/modules/ms@^2", "/modules/ms@latest", "/modules/Ms@1.0.0", "/modules/..%2F..@1.0.0"} {
		e.do("GET", bad, acme, nil).wantErr(t, http.StatusBadRequest, codeInvalidModule)
	}
	e.do("GET", "/modules/ms@2.1.3", "", nil).wantErr(t, http.StatusUnauthorized, codeUnauthorized)
}

func TestOverallStatus(t *testing.T) {
	s := func(v ...string) []modstore.Status {
		out := make([]modstore.Status, len(v))
		for i := range v {
			out[i].Status = v[i]
		}
		return out
	}
	for _, tc := range []struct {
		in   []modstore.Status
		want string
	}{
		{s(), "ready"},
		{s("ready", "ready"), "ready"},
		{s("ready", "building"), "building"},
		{s("building", "failed", "ready"), "failed"},
		{s(""), "building"},
	} {
		if got := overallStatus(tc.in); got != tc.want {
			t.Errorf("overallStatus(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
