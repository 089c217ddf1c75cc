package integration

import (
	"context"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/wharfhq/wharf/integration/wharftest"
)

// Invariant: two nodes sharing one store and one Docker engine: a function
// created through one runs on both; an update made through one node is served
// by the other within 2 s; a tenant deleted through one node loses its
// container on the other; each node's containers carry its own id.
func TestTwoNodesShareOneStore(t *testing.T) {
	ctx := context.Background()
	st, err := wharftest.RunRestartableStore(ctx)
	wharftest.CleanupStore(t, st)
	if err != nil {
		t.Fatal(err)
	}
	secretsKey := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	admin := "wha_cluster_test_admin_token_0123456789"
	common := []wharftest.Option{wharftest.WithAdminToken(admin),
		wharftest.WithArgs("--mongo-uri", st.URI, "--secrets-key", secretsKey)}
	a := startNode(t, common...)
	b := startNode(t, common...)

	tok := createTenant(t, a, "shared")
	deploy(t, a, tok, "shared", "f", `module.exports = (ctx, cb) => cb(null, {v: 1, s: ctx.secrets.K, host: require('os').hostname()})`,
		map[string]any{"secrets": map[string]string{"K": "sealed-once"}})
	var ra, rb struct {
		V    int
		S    string
		Host string
	}
	_ = do(t, a, "GET", "/run/shared/f", "", nil).JSON(&ra)
	_ = do(t, b, "GET", "/run/shared/f", "", nil).JSON(&rb)
	if ra.V != 1 || rb.V != 1 || rb.S != "sealed-once" {
		t.Fatalf("first version on both nodes: %+v %+v", ra, rb)
	}
	if ra.Host == rb.Host {
		t.Fatal("two nodes served from one container")
	}
	for _, node := range []*wharftest.Node{a, b} {
		for _, c := range nodeContainers(t, node.NodeID) {
			if c.Labels["wharf.node"] != node.NodeID {
				t.Fatalf("container %s of node %s labelled %q", c.Name, node.NodeID, c.Labels["wharf.node"])
			}
		}
	}

	// Update through A; B must serve it within 2 s.
	deploy(t, a, tok, "shared", "f", `module.exports = (ctx, cb) => cb(null, {v: 2})`, nil)
	start := time.Now()
	eventually(t, 2*time.Second, "node B to serve version 2", func() bool {
		var out struct{ V int }
		r, err := b.Do("GET", "/run/shared/f", "", nil)
		return err == nil && r.JSON(&out) == nil && out.V == 2
	})
	t.Logf("update reached the other node in %v", time.Since(start).Round(time.Millisecond))

	// Delete the tenant through B; A's container for it goes, and its functions 404 on A.
	expect(t, do(t, b, "DELETE", "/api/v1/tenants/shared", admin, nil), http.StatusNoContent)
	eventually(t, 2*time.Second, "node A to drop the tenant", func() bool {
		r, err := a.Do("GET", "/run/shared/f", "", nil)
		return err == nil && r.Status == http.StatusNotFound
	})
	eventually(t, 5*time.Second, "node A's container of the deleted tenant to be removed", func() bool {
		return exec.Command("docker", "inspect", ra.Host).Run() != nil
	})
}
