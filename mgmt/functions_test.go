package mgmt

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPutAndGetFunction(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	const secretValue = "s3cr3t-value-never-shown"

	r := e.do("PUT", "/tenants/acme/functions/hook", acme, map[string]any{
		"code":    "module.exports = cb => cb(null, 1)",
		"secrets": map[string]string{"API_KEY": secretValue, "B": "other-value"},
	})
	var raw map[string]any
	r.want(t, http.StatusCreated, &raw)
	if len(raw) != 5 {
		t.Errorf("PUT answered %v, want name, version, status, modules, updated_at", raw)
	}
	var st statusOut
	_ = json.Unmarshal(r.Body, &st)
	if st.Name != "hook" || st.Version != 1 || st.Status != "ready" || st.Modules == nil || len(st.Modules) != 0 ||
		time.Since(st.UpdatedAt) > time.Minute {
		t.Fatalf("PUT answered %s", r.Body)
	}
	if strings.Contains(string(r.Body), secretValue) {
		t.Fatalf("PUT shows a secret value: %s", r.Body)
	}
	e.wantHooks("fn acme/hook")

	g := e.do("GET", "/tenants/acme/functions/hook", acme, nil)
	raw = nil
	g.want(t, http.StatusOK, &raw)
	if len(raw) != 9 {
		t.Errorf("GET answered %v, want 9 fields", raw)
	}
	if strings.Contains(string(g.Body), secretValue) || strings.Contains(string(g.Body), "other-value") {
		t.Fatalf("GET shows a secret value: %s", g.Body)
	}
	fv := e.get(acme, "acme", "hook")
	if fv.Name != "hook" || fv.Version != 1 || fv.Code != "module.exports = cb => cb(null, 1)" ||
		!slices.Equal(fv.Secrets, []string{"API_KEY", "B"}) || fv.TimeoutMS != 30000 ||
		fv.Dependencies == nil || len(fv.Dependencies) != 0 || !fv.UpdatedAt.Equal(st.UpdatedAt) {
		t.Fatalf("GET %+v", fv)
	}

	// Update: 200, next version, the new content.
	st = e.put(acme, "acme", "hook", map[string]any{"code": "v2", "timeout_ms": 1500}, http.StatusOK)
	if st.Version != 2 || st.Status != "ready" {
		t.Fatalf("update answered %+v", st)
	}
	e.wantHooks("fn acme/hook")
	fv = e.get(acme, "acme", "hook")
	if fv.Version != 2 || fv.Code != "v2" || fv.TimeoutMS != 1500 || fv.Secrets == nil || len(fv.Secrets) != 0 {
		t.Fatalf("after update %+v", fv)
	}
	// Empty dependencies map and ?wait= are accepted.
	st = e.put(acme, "acme", "hook?wait=60s", map[string]any{"code": "v3", "dependencies": map[string]string{}}, http.StatusOK)
	if st.Version != 3 {
		t.Fatalf("third version %+v", st)
	}
	e.wantHooks("fn acme/hook")

	// A second function; the list.
	e.put(acme, "acme", "A-first_1", map[string]any{"code": "a"}, http.StatusCreated)
	e.wantHooks("fn acme/A-first_1")
	var list []map[string]any
	e.do("GET", "/tenants/acme/functions", acme, nil).want(t, http.StatusOK, &list)
	if len(list) != 2 || list[0]["name"] != "A-first_1" || list[1]["name"] != "hook" ||
		list[1]["version"] != float64(3) || list[1]["status"] != "ready" || list[1]["updated_at"] == nil || len(list[1]) != 4 {
		t.Fatalf("list %v", list)
	}
}

func TestNilHooks(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	// A second API on the same store, with nil hooks and no logger, at /nil.
	New(e.st, nil, Config{}, nil).Register(e.echo.Group("/nil"))
	for _, rt := range []struct {
		method, path string
		body         string
		token        string
		status       int
	}{
		{"PUT", "/tenants/acme/functions/g", `{"code":"x"}`, acme, 201},
		{"PUT", "/tenants/acme/functions/g", `{"code":"y"}`, acme, 200},
		{"POST", "/tenants/acme/functions/g/rollback", `{"version":1}`, acme, 200},
		{"DELETE", "/tenants/acme/functions/g", "", acme, 204},
		{"DELETE", "/tenants/acme", "", testAdminToken, 204},
	} {
		req := httptest.NewRequest(rt.method, "/nil"+rt.path, strings.NewReader(rt.body))
		req.Header.Set("Authorization", "Bearer "+rt.token)
		serve(e, req).want(t, rt.status, nil)
	}
	e.wantHooks() // the recording hooks belong to the other API
}

func TestPutFunctionRejected(t *testing.T) {
	e := newEnv(t, Config{MaxCodeBytes: 1000, MaxTimeoutMS: 60000, DefaultTimeoutMS: 10000})
	acme := e.mustTenant("acme")
	e.put(acme, "acme", "hook", map[string]any{"code": "v1", "secrets": map[string]string{"K": "V1"}}, http.StatusCreated)
	e.wantHooks("fn acme/hook")

	manyDeps := map[string]string{}
	for i := range 51 {
		manyDeps[fmt.Sprintf("d%d", i)] = "1.0.0"
	}
	manySecrets := map[string]string{}
	for i := range 101 {
		manySecrets[fmt.Sprintf("S%d", i)] = "v"
	}
	dep := func(name, version string) map[string]any {
		return map[string]any{"code": "x", "dependencies": map[string]string{name: version}}
	}
	for _, tc := range []struct {
		name    string
		fn      string // function name; "hook" when empty
		query   string
		body    any
		status  int
		code    string
		mention string
	}{
		{"bad name dot", "ho.ok", "", map[string]any{"code": "x"}, 400, "invalid_function_name", `"ho.ok"`},
		{"bad name underscore first", "_hook", "", map[string]any{"code": "x"}, 400, "invalid_function_name", ""},
		{"bad name too long", strings.Repeat("f", 65), "", map[string]any{"code": "x"}, 400, "invalid_function_name", ""},
		{"missing code", "", "", map[string]any{"timeout_ms": 5}, 400, "missing_code", ""},
		{"empty code", "", "", map[string]any{"code": ""}, 400, "missing_code", ""},
		{"blank code", "", "", map[string]any{"code": "  \n"}, 400, "missing_code", ""},
		{"null code", "", "", rawBody(`{"code":null}`), 400, "missing_code", ""},
		{"code too large", "", "", map[string]any{"code": strings.Repeat("x", 1001)}, 413, "code_too_large", "1000"},
		{"body too large", "", "", map[string]any{"code": strings.Repeat("x", 9<<20)}, 413, "body_too_large", ""},
		{"range dep", "", "", dep("ms", "^1.0.0"), 400, "invalid_dependency", `"^1.0.0"`},
		{"tilde dep", "", "", dep("ms", "~2.1.3"), 400, "invalid_dependency", `"ms"`},
		{"tag dep", "", "", dep("ms", "latest"), 400, "invalid_dependency", `"latest"`},
		{"git dep", "", "", dep("x", "git+https://github.com/a/b.git"), 400, "invalid_dependency", `"git+https://github.com/a/b.git"`},
		{"url dep", "", "", dep("x", "https://example.com/x.tgz"), 400, "invalid_dependency", `"x"`},
		{"file dep", "", "", dep("x", "file:../x"), 400, "invalid_dependency", `"file:../x"`},
		{"partial version", "", "", dep("ms", "2.1"), 400, "invalid_dependency", `"2.1"`},
		{"bad dep name", "", "", dep("Lodash", "4.17.21"), 400, "invalid_dependency", `"Lodash"`},
		{"dep version not string", "", "", rawBody(`{"code":"x","dependencies":{"ms":2}}`), 400, "bad_field_type", ""},
		{"too many deps", "", "", map[string]any{"code": "x", "dependencies": manyDeps}, 400, "too_many_dependencies", ""},
		{"valid deps unsupported", "", "", dep("ms", "2.1.3"), 400, "dependencies_unsupported", "not supported by this node yet"},
		{"bad secret name", "", "", map[string]any{"code": "x", "secrets": map[string]string{"1BAD": "v"}}, 400, "invalid_secret", `"1BAD"`},
		{"secret too large", "", "", map[string]any{"code": "x", "secrets": map[string]string{"K": strings.Repeat("v", 64<<10+1)}}, 400, "invalid_secret", `"K"`},
		{"secret not string", "", "", rawBody(`{"code":"x","secrets":{"K":1}}`), 400, "bad_field_type", ""},
		{"too many secrets", "", "", map[string]any{"code": "x", "secrets": manySecrets}, 400, "too_many_secrets", ""},
		{"negative timeout", "", "", map[string]any{"code": "x", "timeout_ms": -1}, 400, "invalid_timeout", ""},
		{"timeout over max", "", "", map[string]any{"code": "x", "timeout_ms": 60001}, 400, "invalid_timeout", "60000"},
		{"timeout string", "", "", rawBody(`{"code":"x","timeout_ms":"30s"}`), 400, "bad_field_type", `"timeout_ms"`},
		{"timeout fraction", "", "", rawBody(`{"code":"x","timeout_ms":1.5}`), 400, "bad_field_type", ""},
		{"bad wait", "", "?wait=soon", map[string]any{"code": "x"}, 400, "invalid_wait", ""},
		{"wait without unit", "", "?wait=60", map[string]any{"code": "x"}, 400, "invalid_wait", ""},
		{"negative wait", "", "?wait=-5s", map[string]any{"code": "x"}, 400, "invalid_wait", ""},
		{"unknown field", "", "", rawBody(`{"code":"x","runtime":"node20"}`), 400, "unknown_field", `"runtime"`},
		{"field case", "", "", rawBody(`{"Code":"x"}`), 400, "unknown_field", ""},
		{"bad json", "", "", rawBody(`{"code":"x"`), 400, "bad_json", ""},
		{"two values", "", "", rawBody(`{"code":"x"}{"code":"y"}`), 400, "bad_json", ""},
		{"empty body", "", "", rawBody(``), 400, "empty_body", ""},
		{"syntax error", "", "", map[string]any{"code": "module.exports = function (cb) {\n  cb(null, {a: 1,,})\n}"}, 400, "syntax_error", "line 2, column 18"},
		{"unclosed", "", "", map[string]any{"code": "module.exports = function (cb) {"}, 400, "syntax_error", "line 1, column 33"},
		{"import without use latest", "", "", map[string]any{"code": "import x from 'x'"}, 400, "syntax_error", "line 1"},
		{"use latest syntax error", "", "", map[string]any{"code": "'use latest';\nimport x from 'x';\nexport default (cb) => cb(null, x) +;"}, 400, "syntax_error", "line 3, column 37"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.fn
			if name == "" {
				name = "hook"
			}
			r := e.do("PUT", "/tenants/acme/functions/"+name+tc.query, acme, tc.body)
			b := r.wantErr(t, tc.status, tc.code)
			if !strings.Contains(b.Error, tc.mention) {
				t.Errorf("message %q does not mention %s", b.Error, tc.mention)
			}
			if strings.Contains(b.Error, "vvvvvvvv") {
				t.Errorf("message %q shows a secret value", b.Error)
			}
		})
	}
	// The exact limits pass.
	e.put(acme, "acme", "edge", map[string]any{"code": strings.Repeat("x", 1000), "timeout_ms": 60000}, http.StatusCreated)
	if fv := e.get(acme, "acme", "edge"); fv.TimeoutMS != 60000 || len(fv.Code) != 1000 {
		t.Fatalf("edge %+v", fv)
	}
	e.put(acme, "acme", "dflt", map[string]any{"code": "x"}, http.StatusCreated)
	if fv := e.get(acme, "acme", "dflt"); fv.TimeoutMS != 10000 {
		t.Fatalf("configured default timeout: %+v", fv)
	}
	e.wantHooks("fn acme/edge", "fn acme/dflt")

	// Every rejected request left hook and its history as they were.
	fv := e.get(acme, "acme", "hook")
	if fv.Version != 1 || fv.Code != "v1" || !slices.Equal(fv.Secrets, []string{"K"}) {
		t.Fatalf("hook changed by rejected requests: %+v", fv)
	}
	var vs []versionOut
	e.do("GET", "/tenants/acme/functions/hook/versions", acme, nil).want(t, http.StatusOK, &vs)
	if len(vs) != 1 {
		t.Fatalf("versions after rejected requests: %+v", vs)
	}
	var list []map[string]any
	e.do("GET", "/tenants/acme/functions", acme, nil).want(t, http.StatusOK, &list)
	if len(list) != 3 {
		t.Fatalf("functions after rejected requests: %v", list)
	}
}

func TestFunctionsCrossTenant(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	other := e.mustTenant("other")
	e.put(other, "other", "hook", map[string]any{"code": "theirs", "secrets": map[string]string{"K": "V"}}, http.StatusCreated)
	e.hooks.take()

	for _, rt := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/functions", nil},
		{"PUT", "/functions/hook", map[string]any{"code": "mine"}},
		{"PUT", "/functions/new", map[string]any{"code": "mine"}},
		{"GET", "/functions/hook", nil},
		{"DELETE", "/functions/hook", nil},
		{"GET", "/functions/hook/versions", nil},
		{"POST", "/functions/hook/rollback", map[string]any{"version": 1}},
		{"GET", "/functions/hook/storage", nil},
	} {
		t.Run(rt.method+rt.path, func(t *testing.T) {
			hidden := e.do(rt.method, "/tenants/other"+rt.path, acme, rt.body).wantErr(t, http.StatusNotFound, "tenant_not_found")
			missing := e.do(rt.method, "/tenants/ghost"+rt.path, acme, rt.body).wantErr(t, http.StatusNotFound, "tenant_not_found")
			if strings.Replace(hidden.Error, "other", "ghost", 1) != missing.Error {
				t.Errorf("messages differ: %q vs %q", hidden.Error, missing.Error)
			}
			e.do(rt.method, "/tenants/NOT_VALID"+rt.path, acme, rt.body).wantErr(t, http.StatusNotFound, "tenant_not_found")
		})
	}
	e.wantHooks()
	fv := e.get(other, "other", "hook")
	if fv.Version != 1 || fv.Code != "theirs" {
		t.Fatalf("other's function changed: %+v", fv)
	}
	var list []map[string]any
	e.do("GET", "/tenants/other/functions", other, nil).want(t, http.StatusOK, &list)
	if len(list) != 1 {
		t.Fatalf("other's functions: %v", list)
	}
}

func TestDeleteFunction(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	e.put(acme, "acme", "hook", map[string]any{"code": "v1"}, http.StatusCreated)
	e.put(acme, "acme", "hook", map[string]any{"code": "v2"}, http.StatusOK)
	e.put(acme, "acme", "keep", map[string]any{"code": "k"}, http.StatusCreated)
	e.hooks.take()

	e.do("DELETE", "/tenants/acme/functions/hook", acme, nil).want(t, http.StatusNoContent, nil)
	e.wantHooks("fn acme/hook")
	for _, rt := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/functions/hook", nil},
		{"DELETE", "/functions/hook", nil},
		{"GET", "/functions/hook/versions", nil},
		{"POST", "/functions/hook/rollback", map[string]any{"version": 1}},
		{"GET", "/functions/never", nil},
		{"DELETE", "/functions/never", nil},
		{"GET", "/functions/never/versions", nil},
		{"GET", "/functions/hook/storage", nil},
		{"GET", "/functions/never/storage", nil},
		{"POST", "/functions/never/rollback", map[string]any{"version": 1}},
		{"GET", "/functions/bad.name", nil},
		{"DELETE", "/functions/bad.name", nil},
	} {
		t.Run(rt.method+rt.path, func(t *testing.T) {
			e.do(rt.method, "/tenants/acme"+rt.path, acme, rt.body).wantErr(t, http.StatusNotFound, "function_not_found")
		})
	}
	e.wantHooks()
	var list []map[string]any
	e.do("GET", "/tenants/acme/functions", acme, nil).want(t, http.StatusOK, &list)
	if len(list) != 1 || list[0]["name"] != "keep" {
		t.Fatalf("list after delete: %v", list)
	}
	// Putting it again creates it (201), as the version after the delete marker.
	st := e.put(acme, "acme", "hook", map[string]any{"code": "again"}, http.StatusCreated)
	if st.Version <= 2 {
		t.Fatalf("re-created version %d", st.Version)
	}
	if fv := e.get(acme, "acme", "hook"); fv.Code != "again" {
		t.Fatalf("re-created %+v", fv)
	}
	// The admin deletes too.
	e.do("DELETE", "/tenants/acme/functions/keep", testAdminToken, nil).want(t, http.StatusNoContent, nil)
	e.wantHooks("fn acme/hook", "fn acme/keep")
}

func TestVersionsAndRollback(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	e.put(acme, "acme", "hook", map[string]any{"code": "one", "secrets": map[string]string{"OLD": "old-secret-value"}, "timeout_ms": 1000}, http.StatusCreated)
	e.put(acme, "acme", "hook", map[string]any{"code": "two;", "secrets": map[string]string{"NEW": "x"}}, http.StatusOK)
	e.put(acme, "acme", "hook", map[string]any{"code": "three"}, http.StatusOK)
	e.hooks.take()

	r := e.do("GET", "/tenants/acme/functions/hook/versions", acme, nil)
	var vs []versionOut
	r.want(t, http.StatusOK, &vs)
	if strings.Contains(string(r.Body), "old-secret-value") {
		t.Fatalf("versions show a secret value: %s", r.Body)
	}
	if len(vs) != 3 {
		t.Fatalf("versions %+v", vs)
	}
	for i, v := range vs {
		if v.Version != i+1 || v.CreatedAt.IsZero() || v.Dependencies == nil || v.Secrets == nil {
			t.Fatalf("version %d: %+v", i, v)
		}
	}
	if vs[0].CodeSize != 3 || vs[1].CodeSize != 4 || !slices.Equal(vs[0].Secrets, []string{"OLD"}) ||
		!slices.Equal(vs[1].Secrets, []string{"NEW"}) || len(vs[2].Secrets) != 0 || vs[0].TimeoutMS != 1000 {
		t.Fatalf("versions %+v", vs)
	}

	// Rollback to 1 makes version 4 with version 1's content.
	var st statusOut
	e.do("POST", "/tenants/acme/functions/hook/rollback", acme, map[string]int{"version": 1}).want(t, http.StatusOK, &st)
	if st.Name != "hook" || st.Version != 4 || st.Status != "ready" || st.Modules == nil {
		t.Fatalf("rollback answered %+v", st)
	}
	e.wantHooks("fn acme/hook")
	fv := e.get(acme, "acme", "hook")
	if fv.Version != 4 || fv.Code != "one" || !slices.Equal(fv.Secrets, []string{"OLD"}) || fv.TimeoutMS != 1000 {
		t.Fatalf("after rollback %+v", fv)
	}
	// The secret values came along (read from the store, never from the API).
	got, err := e.st.GetFunction(testCtx(t), "acme", "hook")
	if err != nil || got.Secrets["OLD"] != "old-secret-value" {
		t.Fatalf("stored secrets after rollback: %v, %v", got.Secrets, err)
	}
	e.do("GET", "/tenants/acme/functions/hook/versions", acme, nil).want(t, http.StatusOK, &vs)
	if len(vs) != 4 || vs[3].Version != 4 || vs[3].CodeSize != 3 {
		t.Fatalf("versions after rollback %+v", vs)
	}

	// Failing rollbacks change nothing.
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"unknown version", map[string]int{"version": 99}, 404, "version_not_found"},
		{"zero", map[string]int{"version": 0}, 400, "invalid_version"},
		{"negative", map[string]int{"version": -1}, 400, "invalid_version"},
		{"missing", rawBody(`{}`), 400, "invalid_version"},
		{"null", rawBody(`{"version":null}`), 400, "invalid_version"},
		{"string", rawBody(`{"version":"1"}`), 400, "bad_field_type"},
		{"unknown field", rawBody(`{"version":1,"force":true}`), 400, "unknown_field"},
		{"empty body", rawBody(``), 400, "empty_body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.do("POST", "/tenants/acme/functions/hook/rollback", acme, tc.body).wantErr(t, tc.status, tc.code)
		})
	}
	e.wantHooks()
	if fv := e.get(acme, "acme", "hook"); fv.Version != 4 {
		t.Fatalf("failed rollbacks changed the function: %+v", fv)
	}

	// A version from before a delete is gone with the delete; after re-creating,
	// the old versions can be rolled back to again.
	e.do("DELETE", "/tenants/acme/functions/hook", acme, nil).want(t, http.StatusNoContent, nil)
	e.put(acme, "acme", "hook", map[string]any{"code": "fresh"}, http.StatusCreated)
	e.hooks.take()
	// Version 5 is the delete marker: not a version one can roll back to.
	e.do("POST", "/tenants/acme/functions/hook/rollback", acme, map[string]int{"version": 5}).wantErr(t, http.StatusNotFound, "version_not_found")
	e.do("POST", "/tenants/acme/functions/hook/rollback", acme, map[string]int{"version": 2}).want(t, http.StatusOK, &st)
	if st.Version != 7 {
		t.Fatalf("rollback after re-create: %+v", st)
	}
	if fv := e.get(acme, "acme", "hook"); fv.Code != "two;" {
		t.Fatalf("after second rollback %+v", fv)
	}
	e.wantHooks("fn acme/hook")
}

func TestLogsHoldNoSecrets(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	var tok tokenOut
	e.do("POST", "/tenants/acme/tokens", acme, map[string]string{"description": "ci"}).want(t, http.StatusCreated, &tok)
	e.put(acme, "acme", "hook", map[string]any{"code": "x", "secrets": map[string]string{"K": "super-secret-value"}}, http.StatusCreated)
	e.do("POST", "/tenants/acme/functions/hook/rollback", tok.Token, map[string]int{"version": 1}).want(t, http.StatusOK, nil)
	e.do("DELETE", "/tenants/acme/tokens/"+tok.ID, acme, nil).want(t, http.StatusNoContent, nil)
	e.do("GET", "/tenants", "wrong-token-value", nil).wantErr(t, http.StatusUnauthorized, "unauthorized")
	e.do("DELETE", "/tenants/acme", testAdminToken, nil).want(t, http.StatusNoContent, nil)
	logs := e.logs.String()
	if !strings.Contains(logs, "tenant deleted") || !strings.Contains(logs, "function stored") {
		t.Fatalf("expected log lines missing:\n%s", logs)
	}
	for _, s := range []string{acme, tok.Token, testAdminToken, "super-secret-value", "wrong-token-value"} {
		if strings.Contains(logs, s) {
			t.Fatalf("logs hold %q:\n%s", s, logs)
		}
	}
}

// Invariant: 'use latest' code is compiled once, at deploy: the version keeps
// the user's code (what the API shows) beside the CommonJS the runner runs,
// and a rollback carries both.
func TestUseLatestCompiledAtDeploy(t *testing.T) {
	e := newEnv(t, Config{MaxCodeBytes: 10000, MaxTimeoutMS: 60000, DefaultTimeoutMS: 10000})
	acme := e.mustTenant("acme")
	code := "'use latest';\nimport { format } from 'util';\nexport default function (cb) { cb(null, format('%s', 'x')) }\n"
	e.put(acme, "acme", "modern", map[string]any{"code": code}, http.StatusCreated)
	if fv := e.get(acme, "acme", "modern"); fv.Code != code {
		t.Fatalf("GET shows %q, want the deployed code", fv.Code)
	}
	stored, err := e.st.GetFunction(testCtx(t), "acme", "modern")
	if err != nil {
		t.Fatal(err)
	}
	if stored.Code != code || !strings.Contains(stored.Compiled, `require("util")`) || strings.Contains(stored.Compiled, "\nimport ") {
		t.Fatalf("stored code %q, compiled %q", stored.Code, stored.Compiled)
	}
	// Plain code is stored as it is, with no compiled form.
	e.put(acme, "acme", "modern", map[string]any{"code": "module.exports = function (cb) { cb() }"}, http.StatusOK)
	if v2, _ := e.st.GetFunction(testCtx(t), "acme", "modern"); v2.Version != 2 || v2.Compiled != "" {
		t.Fatalf("version 2: %+v", v2)
	}
	e.do("POST", "/tenants/acme/functions/modern/rollback", acme, map[string]int{"version": 1}).want(t, http.StatusOK, nil)
	if v3, _ := e.st.GetFunction(testCtx(t), "acme", "modern"); v3.Version != 3 || v3.Code != code || v3.Compiled != stored.Compiled {
		t.Fatalf("rollback: %+v", v3)
	}
}
