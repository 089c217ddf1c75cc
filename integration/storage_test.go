package integration

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/integration/wharftest"
)

// counterCode increments its function's storage, retrying on 409 with the
// conflict's document (the 409 counts as a read), and reports its attempts.
const counterCode = `module.exports = function (ctx, cb) {
	if (ctx.query.read) return ctx.storage.get(function (err, n) { cb(err, { n: n === undefined ? 'undefined' : n }) });
	var attempts = 0;
	ctx.storage.get(function (err, n) {
		if (err) return cb(err);
		(function attempt(cur) {
			attempts++;
			ctx.storage.set((cur || 0) + 1, function (err) {
				if (err && err.code === 409) return attempt(err.conflict);
				cb(err, { attempts: attempts });
			});
		})(n);
	});
};`

// Invariant: webtask storage is one document per function shared by every
// container of its tenant on every node: 100 concurrent increments, half
// through each of two nodes on one store (two containers, two store
// clients), end at exactly 100 after 409 retries. Another tenant's function
// of the same name has its own. Deleting the function deletes its storage.
func TestStorageCounterTwoNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := wharftest.RunRestartableStore(ctx)
	wharftest.CleanupStore(t, st)
	if err != nil {
		t.Fatal(err)
	}
	common := []wharftest.Option{wharftest.WithAdminToken("wha_storage_test_admin_token_0123456789"),
		wharftest.WithArgs("--mongo-uri", st.URI, "--secrets-key", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")}
	a := startNode(t, common...)
	b := startNode(t, common...)
	tok := createTenant(t, a, "store-t")
	deploy(t, a, tok, "store-t", "counter", counterCode, map[string]any{"timeout_ms": 120000})

	read := func(n *wharftest.Node) string {
		t.Helper()
		r := do(t, n, "GET", "/run/store-t/counter?read=1", "", nil)
		expect(t, r, http.StatusOK)
		return string(r.Body)
	}
	// Each node's container is ready before the burst (its first request reads).
	if got := read(a); got != `{"n":"undefined"}` {
		t.Fatalf("empty storage reads %s", got)
	}
	if got := read(b); got != `{"n":"undefined"}` {
		t.Fatalf("empty storage reads %s on the other node", got)
	}

	const total = 100
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		attempts int
		failures []string
	)
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := a
			if i%2 == 1 {
				n = b
			}
			r, err := n.Do("POST", "/run/store-t/counter", "", nil)
			mu.Lock()
			defer mu.Unlock()
			var out struct{ Attempts int }
			if err != nil || r.Status != http.StatusOK || r.JSON(&out) != nil || out.Attempts < 1 {
				failures = append(failures, fmt.Sprintf("%v %d %s", err, r.Status, r.Body))
				return
			}
			attempts += out.Attempts
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d increments failed, e.g. %s", len(failures), total, failures[0])
	}
	want := fmt.Sprintf(`{"n":%d}`, total)
	if got := read(a); got != want {
		t.Fatalf("counter on node A = %s, want %s", got, want)
	}
	if got := read(b); got != want {
		t.Fatalf("counter on node B = %s, want %s", got, want)
	}
	if attempts <= total {
		t.Fatalf("%d attempts for %d increments: the requests never raced", attempts, total)
	}
	t.Logf("%d increments took %d attempts (%d retried after 409)", total, attempts, attempts-total)

	// Another tenant's function of the same name has storage of its own.
	tokU := createTenant(t, b, "store-u")
	deploy(t, b, tokU, "store-u", "counter", counterCode, nil)
	if r := do(t, b, "GET", "/run/store-u/counter?read=1", "", nil); string(r.Body) != `{"n":"undefined"}` {
		t.Fatalf("another tenant's counter reads %d %s", r.Status, r.Body)
	}

	// The function goes with its storage; created again, it starts empty.
	expect(t, do(t, a, "DELETE", "/api/v1/tenants/store-t/functions/counter", tok, nil), http.StatusNoContent)
	deploy(t, b, tok, "store-t", "counter", counterCode, nil)
	eventually(t, 5*time.Second, "the recreated function to read empty storage on node A", func() bool {
		r, err := a.Do("GET", "/run/store-t/counter?read=1", "", nil)
		return err == nil && r.Status == http.StatusOK && string(r.Body) == `{"n":"undefined"}`
	})
}
