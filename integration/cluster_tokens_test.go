package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/client"
	"github.com/wharfhq/wharf/integration/wharftest"
)

// Invariant: two nodes sharing one store act as one system: a token revoked
// on one node is refused by the other on its very next request; a function
// stored through one node, with a secret, runs on the other; and the output
// of a tenant's container on one node is streamed live by the other node's
// logs endpoint and kept in the history it serves.
func TestTwoNodesShareTokensAndLogs(t *testing.T) {
	port := freePort(t)
	key := randomHex(32)
	a := startNode(t, wharftest.WithArgs("--store-listen", fmt.Sprintf("127.0.0.1:%d", port), "--secrets-key", key, "--pool-size", "1"))
	b := startNode(t, wharftest.WithAdminToken(a.AdminToken),
		wharftest.WithArgs("--mongo-uri", fmt.Sprintf("mongodb://127.0.0.1:%d/", port), "--secrets-key", key, "--pool-size", "0"))

	first := createTenant(t, a, "shared")
	r := do(t, b, "POST", "/api/v1/tenants/shared/tokens", first, map[string]string{"description": "second"})
	expect(t, r, http.StatusCreated)
	var second struct{ ID, Token string }
	if err := r.JSON(&second); err != nil {
		t.Fatal(err)
	}
	expect(t, do(t, a, "GET", "/api/v1/tenants/shared/functions", second.Token, nil), http.StatusOK)
	expect(t, do(t, a, "DELETE", "/api/v1/tenants/shared/tokens/"+second.ID, first, nil), http.StatusNoContent)
	expect(t, do(t, b, "GET", "/api/v1/tenants/shared/functions", second.Token, nil), http.StatusUnauthorized)
	expect(t, do(t, a, "GET", "/api/v1/tenants/shared/functions", second.Token, nil), http.StatusUnauthorized)

	// Stored through b, run on a (b has no containers), secret opened with the shared key.
	deploy(t, b, first, "shared", "hello", `module.exports = function (ctx, cb) {
		console.log('hello ' + ctx.query.n); cb(null, {k: ctx.secrets.K}) }`, map[string]any{"secrets": map[string]string{"K": "v"}})
	stream := openLogs(t, b, "shared", first, "?tail=0")
	time.Sleep(300 * time.Millisecond) // let b's stream take note of what the store already holds
	r = do(t, a, "GET", "/run/shared/hello?n=1", "", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"k":"v"`) {
		t.Fatalf("function on a: %s", r.Body)
	}
	rid := r.Header.Get("X-Request-Id")
	got := stream.until(t, 15*time.Second, "a's line on b's stream", func(l client.LogLine) bool { return l.Message == "hello 1" })
	if l := got[len(got)-1]; l.Function != "hello" || l.RequestID != rid {
		t.Fatalf("line streamed by b: %+v (request id %s)", l, rid)
	}
	var hist []client.LogLine
	eventually(t, 10*time.Second, "a's line in b's history", func() bool {
		hist = nil
		_ = do(t, b, "GET", "/api/v1/tenants/shared/logs?follow=false", first, nil).JSON(&hist)
		return len(hist) == 1
	})
	if hist[0].Message != "hello 1" || hist[0].RequestID != rid {
		t.Fatalf("b's history %+v", hist)
	}
	if dup := stream.drain(3 * time.Second); len(dup) != 0 {
		t.Fatalf("b's stream repeated lines: %+v", dup)
	}
}
