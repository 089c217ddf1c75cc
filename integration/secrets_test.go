package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/wharfhq/wharf/integration/wharftest"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dumpStore returns every document of every collection of every database
// of the store at uri, as extended JSON, one per line.
func dumpStore(t *testing.T, uri string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect(context.Background())
	dbs, err := cl.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, dbName := range dbs {
		db := cl.Database(dbName)
		colls, err := db.ListCollectionNames(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		for _, coll := range colls {
			cur, err := db.Collection(coll).Find(ctx, bson.D{})
			if err != nil {
				t.Fatal(err)
			}
			for cur.Next(ctx) {
				j, err := bson.MarshalExtJSON(cur.Current, false, false)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%s.%s %s\n", dbName, coll, j)
			}
			if err := cur.Err(); err != nil {
				t.Fatal(err)
			}
			cur.Close(ctx)
		}
	}
	return b.String()
}

// Invariant: a secret's plaintext reaches the function (context.secrets) and
// nothing else: not an API answer (PUT, GET, list, versions, rollback, an
// error about it), not a raw document of any collection (functions, tokens,
// logs...), not the store's files on disk, not the node's log, not the
// container's output. Each place is shown to hold what was written there,
// so no check passes by looking at nothing.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	n := startNode(t, wharftest.WithArgs("--store-listen", fmt.Sprintf("127.0.0.1:%d", port)))
	tok := createTenant(t, n, "vault")
	secret := "S3cr3t-" + randomHex(16)
	sum := sha256.Sum256([]byte(secret))
	marker := "marker-" + randomHex(8) // in the code and the log line, never secret
	code := fmt.Sprintf(`module.exports = function (ctx, cb) {
		const ok = require('crypto').createHash('sha256').update(ctx.secrets.API_KEY).digest('hex') === '%s';
		console.log('%s: charging with a key of ' + ctx.secrets.API_KEY.length + ' characters');
		cb(null, {match: ok, host: require('os').hostname()}) }`, hex.EncodeToString(sum[:]), marker)

	var answers []string
	keep := func(r wharftest.Response) wharftest.Response { answers = append(answers, string(r.Body)); return r }
	expect(t, keep(do(t, n, "PUT", "/api/v1/tenants/vault/functions/pay", tok,
		map[string]any{"code": code, "secrets": map[string]string{"API_KEY": secret}})), http.StatusCreated)
	expect(t, keep(do(t, n, "PUT", "/api/v1/tenants/vault/functions/pay", tok,
		map[string]any{"code": code + "\n", "secrets": map[string]string{"API_KEY": secret, "OTHER": "x"}})), http.StatusOK)
	expect(t, keep(do(t, n, "PUT", "/api/v1/tenants/vault/functions/bad", tok,
		map[string]any{"code": code, "secrets": map[string]string{"not a name": secret}})), http.StatusBadRequest)
	expect(t, keep(do(t, n, "PUT", "/api/v1/tenants/vault/functions/big", tok,
		map[string]any{"code": code, "secrets": map[string]string{"BIG": secret + strings.Repeat("x", 70<<10)}})), http.StatusBadRequest)
	expect(t, keep(do(t, n, "GET", "/api/v1/tenants/vault/functions/pay", tok, nil)), http.StatusOK)
	expect(t, keep(do(t, n, "GET", "/api/v1/tenants/vault/functions", tok, nil)), http.StatusOK)
	expect(t, keep(do(t, n, "GET", "/api/v1/tenants/vault/functions/pay/versions", tok, nil)), http.StatusOK)
	expect(t, keep(do(t, n, "POST", "/api/v1/tenants/vault/functions/pay/rollback", tok, map[string]int{"version": 1})), http.StatusOK)

	r := do(t, n, "GET", "/run/vault/pay", "", nil)
	expect(t, r, 200)
	var out struct {
		Match bool
		Host  string
	}
	if err := r.JSON(&out); err != nil || !out.Match {
		t.Fatalf("the function did not get its secret: %s", r.Body)
	}
	for i, a := range answers {
		if strings.Contains(a, secret) {
			t.Fatalf("API answer %d shows the secret: %s", i, a)
		}
	}

	// The log line reached the history (so the logs collection is not empty).
	logLine := fmt.Sprintf("%s: charging with a key of %d characters", marker, len(secret)) // only the log has it whole
	eventually(t, 10*time.Second, "the function's line in the stored history", func() bool {
		return strings.Contains(dumpStore(t, fmt.Sprintf("mongodb://127.0.0.1:%d/", port)), logLine)
	})
	dump := dumpStore(t, fmt.Sprintf("mongodb://127.0.0.1:%d/", port))
	for _, want := range []string{"wharf.function_versions", "secrets_sealed", "wharf.logs", "wharf.tokens", logLine} {
		if !strings.Contains(dump, want) {
			t.Fatalf("the store dump lacks %q: the check would look at nothing", want)
		}
	}
	if strings.Contains(dump, secret) {
		t.Fatal("a raw document of the store holds the secret's plaintext")
	}

	// The store's files on disk (SQLite, its journal included).
	var sawMarker bool
	err := filepath.WalkDir(filepath.Join(n.DataDir, "db"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the store file %s holds the secret's plaintext", path)
		}
		sawMarker = sawMarker || bytes.Contains(b, []byte(marker))
		return nil
	})
	if err != nil || !sawMarker {
		t.Fatalf("store files: %v; function code found in them: %v", err, sawMarker)
	}

	// The node's own log, and the engine's copy of the container's output.
	if !strings.Contains(n.Stderr(), "function=pay") {
		t.Fatal("the node's log does not mention the function: the check would look at nothing")
	}
	if strings.Contains(n.Stderr(), secret) || strings.Contains(n.Stdout(), secret) {
		t.Fatal("the node's log holds the secret's plaintext")
	}
	logs, err := exec.Command("docker", "logs", out.Host).CombinedOutput()
	if err != nil || !bytes.Contains(logs, []byte(logLine)) {
		t.Fatalf("docker logs of the tenant's container: %v\n%s", err, logs)
	}
	if bytes.Contains(logs, []byte(secret)) {
		t.Fatal("the container's output holds the secret's plaintext")
	}
}
