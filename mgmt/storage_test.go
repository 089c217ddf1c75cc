package mgmt

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/wharfhq/wharf/store"
)

func TestGetStorage(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	e.put(acme, "acme", "hook", map[string]any{"code": "v1"}, http.StatusCreated)

	var got map[string]any
	e.do("GET", "/tenants/acme/functions/hook/storage", acme, nil).want(t, http.StatusOK, &got)
	if len(got) != 1 || got["rev"] != float64(0) {
		t.Fatalf("empty storage: %v", got)
	}
	if _, err := e.st.SetStorage(testCtx(t), "acme", "hook", store.StorageWrite{Data: json.RawMessage(`{"n":[1,2]}`)}); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/tenants/acme/functions/hook/storage", testAdminToken, nil)
	r.want(t, http.StatusOK, nil)
	if string(r.Body) != "{\"rev\":1,\"data\":{\"n\":[1,2]}}\n" {
		t.Fatalf("storage: %s", r.Body)
	}
	// Reading changes nothing.
	if s, _ := e.st.GetStorage(testCtx(t), "acme", "hook"); s.Rev != 1 {
		t.Fatalf("storage after reads: %+v", s)
	}
	e.do("GET", "/tenants/acme/functions/hook/storage", "", nil).wantErr(t, http.StatusUnauthorized, "unauthorized")
}
