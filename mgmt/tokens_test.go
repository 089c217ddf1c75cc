package mgmt

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

type tokenOut struct {
	ID          string    `json:"id"`
	Token       string    `json:"token"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

func TestTokens(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")

	// The tenant and the admin can both mint tokens; the body is optional.
	var ci, byAdmin, bare tokenOut
	e.do("POST", "/tenants/acme/tokens", acme, map[string]string{"description": "ci"}).want(t, http.StatusCreated, &ci)
	e.do("POST", "/tenants/acme/tokens", testAdminToken, map[string]string{"description": "ops"}).want(t, http.StatusCreated, &byAdmin)
	e.doHeaders("POST", "/tenants/acme/tokens", nil, authHeader(acme)).want(t, http.StatusCreated, &bare)
	for _, tok := range []tokenOut{ci, byAdmin, bare} {
		if tok.ID == "" || tok.Token == "" || tok.CreatedAt.IsZero() {
			t.Fatalf("created token %+v", tok)
		}
	}
	if ci.Description != "ci" || ci.ID == byAdmin.ID || ci.Token == byAdmin.Token {
		t.Fatalf("tokens %+v %+v", ci, byAdmin)
	}

	// Every token works; the old one keeps working.
	for _, tok := range []string{acme, ci.Token, byAdmin.Token, bare.Token} {
		e.do("GET", "/tenants/acme/functions", tok, nil).want(t, http.StatusOK, nil)
	}

	// The list shows ids and descriptions, never secrets or hashes.
	r := e.do("GET", "/tenants/acme/tokens", ci.Token, nil)
	var list []map[string]any
	r.want(t, http.StatusOK, &list)
	if len(list) != 4 {
		t.Fatalf("tokens %v", list)
	}
	for _, tok := range []string{acme, ci.Token, byAdmin.Token, bare.Token} {
		if strings.Contains(string(r.Body), tok) {
			t.Fatalf("the list shows a secret: %s", r.Body)
		}
	}
	descs := map[string]string{}
	for _, m := range list {
		if len(m) != 3 || m["id"] == nil || m["created_at"] == nil {
			t.Fatalf("token entry %v, want id, description, created_at", m)
		}
		descs[m["id"].(string)] = m["description"].(string)
	}
	if descs[ci.ID] != "ci" || descs[byAdmin.ID] != "ops" || descs[bare.ID] != "" {
		t.Fatalf("descriptions %v", descs)
	}

	// Revoking: 204, that token stops working, the others keep working.
	e.do("DELETE", "/tenants/acme/tokens/"+ci.ID, acme, nil).want(t, http.StatusNoContent, nil)
	e.do("GET", "/tenants/acme/functions", ci.Token, nil).wantErr(t, http.StatusUnauthorized, "unauthorized")
	e.do("GET", "/tenants/acme/functions", acme, nil).want(t, http.StatusOK, nil)
	e.do("DELETE", "/tenants/acme/tokens/"+ci.ID, acme, nil).wantErr(t, http.StatusNotFound, "token_not_found")
	e.do("DELETE", "/tenants/acme/tokens/nope", acme, nil).wantErr(t, http.StatusNotFound, "token_not_found")
	e.do("DELETE", "/tenants/acme/tokens/bad.id", acme, nil).wantErr(t, http.StatusNotFound, "token_not_found")
	// The admin revokes too; a token may revoke itself.
	e.do("DELETE", "/tenants/acme/tokens/"+byAdmin.ID, testAdminToken, nil).want(t, http.StatusNoContent, nil)
	e.do("DELETE", "/tenants/acme/tokens/"+bare.ID, bare.Token, nil).want(t, http.StatusNoContent, nil)
	e.do("GET", "/tenants/acme/tokens", bare.Token, nil).wantErr(t, http.StatusUnauthorized, "unauthorized")
	e.do("GET", "/tenants/acme/tokens", acme, nil).want(t, http.StatusOK, &list)
	if len(list) != 1 {
		t.Fatalf("tokens after revoking 3: %v", list)
	}
}

func TestTokensCrossTenant(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	other := e.mustTenant("other")
	var otherTok tokenOut
	e.do("POST", "/tenants/other/tokens", other, map[string]string{"description": "x"}).want(t, http.StatusCreated, &otherTok)

	// Another tenant's tokens answer exactly like a tenant that does not exist.
	for _, rt := range []struct{ method, path string }{
		{"POST", "/tokens"},
		{"GET", "/tokens"},
		{"DELETE", "/tokens/" + otherTok.ID},
	} {
		t.Run(rt.method+rt.path, func(t *testing.T) {
			hidden := e.do(rt.method, "/tenants/other"+rt.path, acme, map[string]string{}).wantErr(t, http.StatusNotFound, "tenant_not_found")
			missing := e.do(rt.method, "/tenants/ghost"+rt.path, acme, map[string]string{}).wantErr(t, http.StatusNotFound, "tenant_not_found")
			if strings.Replace(hidden.Error, "other", "ghost", 1) != missing.Error {
				t.Errorf("messages differ: %q vs %q", hidden.Error, missing.Error)
			}
		})
	}
	// Revoking another tenant's token id through one's own tenant: not found, and it keeps working.
	e.do("DELETE", "/tenants/acme/tokens/"+otherTok.ID, acme, nil).wantErr(t, http.StatusNotFound, "token_not_found")
	e.do("GET", "/tenants/other/tokens", otherTok.Token, nil).want(t, http.StatusOK, nil)
	var list []map[string]any
	e.do("GET", "/tenants/other/tokens", other, nil).want(t, http.StatusOK, &list)
	if len(list) != 2 {
		t.Fatalf("other's tokens changed: %v", list)
	}
	// The admin on a missing tenant.
	e.do("POST", "/tenants/ghost/tokens", testAdminToken, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
	e.do("DELETE", "/tenants/ghost/tokens/x", testAdminToken, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
}

func TestCreateTokenRejected(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	for _, tc := range []struct {
		name string
		body any
		code string
	}{
		{"control character", map[string]string{"description": "a\x00b"}, "invalid_description"},
		{"too long", map[string]string{"description": strings.Repeat("d", MaxDescriptionRunes+1)}, "invalid_description"},
		{"unknown field", rawBody(`{"description":"x","scopes":["all"]}`), "unknown_field"},
		{"wrong type", rawBody(`{"description":5}`), "bad_field_type"},
		{"bad json", rawBody(`{description:"x"}`), "bad_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.do("POST", "/tenants/acme/tokens", acme, tc.body).wantErr(t, http.StatusBadRequest, tc.code)
		})
	}
	var list []map[string]any
	e.do("GET", "/tenants/acme/tokens", acme, nil).want(t, http.StatusOK, &list)
	if len(list) != 1 {
		t.Fatalf("rejected requests created tokens: %v", list)
	}
}
