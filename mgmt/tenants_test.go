package mgmt

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/store"
)

// allRoutes is every route of the API with a body it accepts.
var allRoutes = []struct{ method, path string }{
	{"POST", "/tenants"},
	{"GET", "/tenants"},
	{"DELETE", "/tenants/acme"},
	{"POST", "/tenants/acme/tokens"},
	{"GET", "/tenants/acme/tokens"},
	{"DELETE", "/tenants/acme/tokens/abc"},
	{"GET", "/tenants/acme/functions"},
	{"PUT", "/tenants/acme/functions/hook"},
	{"GET", "/tenants/acme/functions/hook"},
	{"DELETE", "/tenants/acme/functions/hook"},
	{"GET", "/tenants/acme/functions/hook/versions"},
	{"POST", "/tenants/acme/functions/hook/rollback"},
}

func TestAuthRequired(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	e.put(acme, "acme", "hook", map[string]any{"code": "x"}, http.StatusCreated)
	e.wantHooks("fn acme/hook")
	for _, h := range []struct {
		name   string
		header map[string]string
	}{
		{"missing", nil},
		{"empty", map[string]string{"Authorization": ""}},
		{"basic", map[string]string{"Authorization": "Basic " + testAdminToken}},
		{"no token", map[string]string{"Authorization": "Bearer"}},
		{"blank token", map[string]string{"Authorization": "Bearer   "}},
		{"two words", map[string]string{"Authorization": "Bearer " + testAdminToken + " x"}},
		{"unknown", map[string]string{"Authorization": "Bearer nope"}},
		{"unknown tenant-like", map[string]string{"Authorization": "Bearer wht_nope"}},
		{"admin token prefix", map[string]string{"Authorization": "Bearer " + testAdminToken[:10]}},
		{"huge", map[string]string{"Authorization": "Bearer " + strings.Repeat("a", 10000)}},
	} {
		for _, rt := range allRoutes {
			t.Run(h.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				r := e.doHeaders(rt.method, rt.path, rawBody(`{"name":"zzz","code":"y","version":1}`), h.header)
				r.wantErr(t, http.StatusUnauthorized, "unauthorized")
				if got := r.Header.Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("WWW-Authenticate %q", got)
				}
			})
		}
	}
	// Nothing changed.
	if fv := e.get(acme, "acme", "hook"); fv.Version != 1 {
		t.Fatalf("function changed by unauthorized requests: %+v", fv)
	}
	var ts []map[string]any
	e.do("GET", "/tenants", testAdminToken, nil).want(t, http.StatusOK, &ts)
	if len(ts) != 1 {
		t.Fatalf("tenants %v", ts)
	}
	e.wantHooks()

	// The scheme is case-insensitive.
	e.doHeaders("GET", "/tenants", nil, map[string]string{"Authorization": "bearer " + testAdminToken}).want(t, http.StatusOK, nil)
}

func TestCreateTenant(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.do("POST", "/tenants", testAdminToken, map[string]string{"name": "acme"})
	var out map[string]string
	r.want(t, http.StatusCreated, &out)
	if out["name"] != "acme" || !strings.HasPrefix(out["token"], store.TenantTokenPrefix) || len(out) != 2 {
		t.Fatalf("create tenant answered %v", out)
	}
	// The token works for the tenant's routes, and it is stored as the tenant's first token.
	var toks []map[string]any
	e.do("GET", "/tenants/acme/tokens", out["token"], nil).want(t, http.StatusOK, &toks)
	if len(toks) != 1 {
		t.Fatalf("tokens %v", toks)
	}

	e.do("POST", "/tenants", testAdminToken, map[string]string{"name": "acme"}).wantErr(t, http.StatusConflict, "tenant_exists")

	e.mustTenant(strings.Repeat("z", 63))
	e.mustTenant("0-b")

	var list []struct {
		Name      string    `json:"name"`
		CreatedAt time.Time `json:"created_at"`
	}
	e.do("GET", "/tenants", testAdminToken, nil).want(t, http.StatusOK, &list)
	if len(list) != 3 || list[0].Name != "0-b" || list[1].Name != "acme" || list[2].Name != strings.Repeat("z", 63) {
		t.Fatalf("list %+v", list)
	}
	for _, tn := range list {
		if tn.CreatedAt.IsZero() || time.Since(tn.CreatedAt) > time.Minute {
			t.Errorf("created_at %v", tn.CreatedAt)
		}
	}
}

func TestListTenantsEmptyIsArray(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.do("GET", "/tenants", testAdminToken, nil)
	r.want(t, http.StatusOK, nil)
	if strings.TrimSpace(string(r.Body)) != "[]" {
		t.Fatalf("empty list %s, want []", r.Body)
	}
}

func TestCreateTenantRejected(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	for _, tc := range []struct {
		name   string
		body   any
		ctype  string
		status int
		code   string
	}{
		{"uppercase", map[string]string{"name": "Acme2"}, "", 400, "invalid_tenant_name"},
		{"leading dash", map[string]string{"name": "-x"}, "", 400, "invalid_tenant_name"},
		{"underscore", map[string]string{"name": "a_b"}, "", 400, "invalid_tenant_name"},
		{"too long", map[string]string{"name": strings.Repeat("a", 64)}, "", 400, "invalid_tenant_name"},
		{"empty name", map[string]string{"name": ""}, "", 400, "invalid_tenant_name"},
		{"no name", rawBody(`{}`), "", 400, "invalid_tenant_name"},
		{"unknown field", rawBody(`{"name":"x","plan":"pro"}`), "", 400, "unknown_field"},
		{"field case", rawBody(`{"Name":"x"}`), "", 400, "unknown_field"},
		{"duplicate field", rawBody(`{"name":"x","name":"y"}`), "", 400, "duplicate_field"},
		{"not json", rawBody(`name=x`), "", 400, "bad_json"},
		{"two values", rawBody(`{"name":"x"} {"name":"y"}`), "", 400, "bad_json"},
		{"array", rawBody(`["x"]`), "", 400, "bad_json"},
		{"null", rawBody(`null`), "", 400, "bad_json"},
		{"truncated", rawBody(`{"name":"x"`), "", 400, "bad_json"},
		{"empty body", rawBody(``), "", 400, "empty_body"},
		{"number name", rawBody(`{"name":7}`), "", 400, "bad_field_type"},
		{"form content type with a form body", rawBody(`name=x`), "application/x-www-form-urlencoded", 400, "bad_json"},
		{"text content type", rawBody(`{"name":"x"}`), "text/plain", 415, "unsupported_media_type"},
		{"too large", rawBody(`{"name":"x","pad":"` + strings.Repeat("a", smallBodyLimit) + `"}`), "", 413, "body_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := authHeader(testAdminToken)
			if tc.ctype != "" {
				h["Content-Type"] = tc.ctype
			}
			e.doHeaders("POST", "/tenants", tc.body, h).wantErr(t, tc.status, tc.code)
		})
	}
	// No Content-Type is fine, with parameters too.
	e.doHeaders("POST", "/tenants", rawBody(`{"name":"x1"}`), map[string]string{
		"Authorization": "Bearer " + testAdminToken, "Content-Type": "application/json; charset=utf-8",
	}).want(t, http.StatusCreated, nil)
	req := map[string]string{"Authorization": "Bearer " + testAdminToken, "Content-Type": ""}
	e.doHeaders("POST", "/tenants", rawBody(`{"name":"x2"}`), req).want(t, http.StatusCreated, nil)

	// A tenant token may not create or list tenants.
	e.do("POST", "/tenants", acme, map[string]string{"name": "evil"}).wantErr(t, http.StatusForbidden, "forbidden")
	e.do("GET", "/tenants", acme, nil).wantErr(t, http.StatusForbidden, "forbidden")

	// Nothing but acme, x1 and x2 was created.
	var list []struct{ Name string }
	e.do("GET", "/tenants", testAdminToken, nil).want(t, http.StatusOK, &list)
	if len(list) != 3 || list[0].Name != "acme" || list[1].Name != "x1" || list[2].Name != "x2" {
		t.Fatalf("tenants after rejected creates: %+v", list)
	}
}

func TestDeleteTenant(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	other := e.mustTenant("other")
	var tok struct{ ID, Token string }
	e.do("POST", "/tenants/acme/tokens", acme, map[string]string{"description": "ci"}).want(t, http.StatusCreated, &tok)
	e.put(acme, "acme", "hook", map[string]any{"code": "v1", "secrets": map[string]string{"K": "V"}}, http.StatusCreated)
	e.put(acme, "acme", "hook", map[string]any{"code": "v2"}, http.StatusOK)
	e.put(acme, "acme", "second", map[string]any{"code": "s"}, http.StatusCreated)
	e.put(other, "other", "hook", map[string]any{"code": "o"}, http.StatusCreated)
	e.hooks.take()

	// A tenant token cannot delete its own tenant (403) nor learn of another (404).
	e.do("DELETE", "/tenants/acme", acme, nil).wantErr(t, http.StatusForbidden, "forbidden")
	hidden := e.do("DELETE", "/tenants/other", acme, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
	missing := e.do("DELETE", "/tenants/nobody", acme, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
	if strings.Replace(hidden.Error, "other", "nobody", 1) != missing.Error {
		t.Errorf("messages differ: %q vs %q", hidden.Error, missing.Error)
	}
	e.do("DELETE", "/tenants/nobody", testAdminToken, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
	e.do("DELETE", "/tenants/Bad_Name", testAdminToken, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
	e.wantHooks()
	e.get(acme, "acme", "hook")

	e.do("DELETE", "/tenants/acme", testAdminToken, nil).want(t, http.StatusNoContent, nil)
	e.wantHooks("tenant acme")

	// Its tokens stopped working, its functions are gone, the other tenant is untouched.
	e.do("GET", "/tenants/acme/functions", acme, nil).wantErr(t, http.StatusUnauthorized, "unauthorized")
	e.do("GET", "/tenants/acme/functions", tok.Token, nil).wantErr(t, http.StatusUnauthorized, "unauthorized")
	e.do("GET", "/tenants/acme/functions", testAdminToken, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
	e.do("DELETE", "/tenants/acme", testAdminToken, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
	if fv := e.get(other, "other", "hook"); fv.Code != "o" {
		t.Fatalf("other tenant's function %+v", fv)
	}

	// A new tenant of the same name starts empty: no functions, versions from 1, one token.
	acme2 := e.mustTenant("acme")
	var fns []map[string]any
	e.do("GET", "/tenants/acme/functions", acme2, nil).want(t, http.StatusOK, &fns)
	if len(fns) != 0 {
		t.Fatalf("functions of the new tenant: %v", fns)
	}
	if st := e.put(acme2, "acme", "hook", map[string]any{"code": "fresh"}, http.StatusCreated); st.Version != 1 {
		t.Fatalf("first version of the new tenant's function: %d", st.Version)
	}
	var toks []map[string]any
	e.do("GET", "/tenants/acme/tokens", acme2, nil).want(t, http.StatusOK, &toks)
	if len(toks) != 1 {
		t.Fatalf("tokens of the new tenant: %v", toks)
	}
	e.do("GET", "/tenants/acme/functions", acme, nil).wantErr(t, http.StatusUnauthorized, "unauthorized")
}

func TestTenantTokenAdminRoutesForbidden(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	e.mustTenant("other")
	// The admin may use any existing tenant's routes.
	e.put(testAdminToken, "other", "f", map[string]any{"code": "x"}, http.StatusCreated)
	var toks []map[string]any
	e.do("GET", "/tenants/other/tokens", testAdminToken, nil).want(t, http.StatusOK, &toks)
	e.do("GET", "/tenants/ghost/tokens", testAdminToken, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
	e.do("PUT", "/tenants/ghost/functions/f", testAdminToken, map[string]any{"code": "x"}).wantErr(t, http.StatusNotFound, "tenant_not_found")
	// A tenant token does not see the tenant list.
	e.do("GET", "/tenants", acme, nil).wantErr(t, http.StatusForbidden, "forbidden")
}

// failingTokens makes CreateToken fail after the tenant was created.
type failingTokens struct {
	Store
	err error
}

func (f failingTokens) CreateToken(context.Context, string, string) (store.Token, string, error) {
	return store.Token{}, "", f.err
}

func TestCreateTenantUndoneWhenTokenFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"store error", errors.New("disk on fire"), http.StatusInternalServerError, "internal"},
		{"timeout", context.DeadlineExceeded, http.StatusServiceUnavailable, "store_unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, Config{}, func(s Store) Store { return failingTokens{Store: s, err: tc.err} })
			r := e.do("POST", "/tenants", testAdminToken, map[string]string{"name": "acme"})
			r.wantErr(t, tc.status, tc.code)
			if strings.Contains(string(r.Body), "fire") {
				t.Errorf("the cause leaked: %s", r.Body)
			}
			if tc.status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") == "" {
				t.Errorf("no Retry-After on 503")
			}
			if _, err := e.st.GetTenant(testCtx(t), "acme"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("tenant left behind: %v", err)
			}
		})
	}
}

func TestStoreUnavailable(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	e.emb.Close() // the store goes away
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, rt := range []struct{ method, path, token string }{
		{"GET", "/tenants", testAdminToken},
		{"GET", "/tenants/acme/functions", acme},
	} {
		req := newRequest(ctx, rt.method, rt.path, rt.token)
		r := serve(e, req)
		r.wantErr(t, http.StatusServiceUnavailable, "store_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: no Retry-After", rt.method, rt.path)
		}
	}
}
