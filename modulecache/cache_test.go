package modulecache

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/modstore"
)

var ms = ref("ms", "2.1.3")

// Invariant: concurrent needs of one module download and unpack it once, into
// <root>/<name>/<version>/node_modules, readable by any uid and with no
// temporary name left.
func TestEnsureOnce(t *testing.T) {
	src := newSource()
	src.add(t, ms, map[string]string{"ms/package.json": `{"name":"ms"}`, "ms/index.js": "module.exports = 1"})
	src.gate = make(chan struct{})
	root := t.TempDir()
	c := newCache(t, root, src, "")
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Ensure(t.Context(), ms); err != nil {
				t.Error(err)
			}
		}()
	}
	for src.Opens() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(src.gate)
	wg.Wait()
	if src.Opens() != 1 || c.Unpacks() != 1 {
		t.Fatalf("%d downloads, %d unpacks; want 1, 1", src.Opens(), c.Unpacks())
	}
	b, err := os.ReadFile(filepath.Join(root, "ms", "2.1.3", "node_modules", "ms", "index.js"))
	if err != nil || string(b) != "module.exports = 1" {
		t.Fatalf("unpacked file: %q %v", b, err)
	}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		info, _ := d.Info()
		if strings.Contains(p, tmpPrefix) {
			t.Errorf("temporary left: %s", p)
		}
		if d.IsDir() && info.Mode().Perm() != 0o755 || !d.IsDir() && info.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v", p, info.Mode())
		}
		return nil
	})
	if got := c.ModulePath(ref("@types/node", "20.1.0")); got != "/modules/@types+node/20.1.0/node_modules/@types/node" {
		t.Fatalf("ModulePath = %s", got)
	}
}

func wantUnavailable(t *testing.T, err error, code string, contains string) {
	t.Helper()
	e := errs.As(err)
	if e == nil || e.Status != http.StatusServiceUnavailable || e.Code != code || !strings.Contains(e.Message, contains) {
		t.Fatalf("error %v, want 503 %s containing %q", err, code, contains)
	}
}

// Invariant: a module not built yet, or failed, is a clear 503 and nothing is unpacked.
func TestEnsureNotReady(t *testing.T) {
	src := newSource()
	c := newCache(t, t.TempDir(), src, "")
	wantUnavailable(t, c.Ensure(t.Context(), ms), codeModuleNotReady, "still being built")
	// Its builds failed for transient reasons: failed, and how to retry.
	src.states[ms.String()] = modstore.Status{Status: modstore.StatusFailed, Error: "gave up after 3 attempts: ETIMEDOUT"}
	wantUnavailable(t, c.Ensure(t.Context(), ms), codeModuleFailed, "ETIMEDOUT; deploying the function again retries the build")
	src.results[ms.String()] = modstore.Result{Status: modstore.StatusFailed, Error: "npm install failed (exit 1): E404: 404 Not Found."}
	err := c.Ensure(t.Context(), ms)
	wantUnavailable(t, err, codeModuleFailed, "E404: 404 Not Found (GET /api/v1/modules/ms@2.1.3")
	if c.Unpacks() != 0 {
		t.Fatal("unpacked a module that is not ready")
	}
	// Link reports the failed module before the one still building.
	_, err = c.Link(t.Context(), map[string]string{"aaa": "1.0.0", "ms": "2.1.3"})
	wantUnavailable(t, err, codeModuleFailed, "ms@2.1.3")
}

// Invariant: a closure whose bytes do not match the recorded sha256 is never
// published, and no partial directory remains.
func TestEnsureRejectsCorruptClosure(t *testing.T) {
	src := newSource()
	res := src.add(t, ms, map[string]string{"ms/index.js": "x"})
	res.SHA256 = strings.Repeat("0", 64)
	src.results[ms.String()] = res
	root := t.TempDir()
	c := newCache(t, root, src, "")
	if err := c.Ensure(t.Context(), ms); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Ensure = %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "ms"))
	if len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
}

// Invariant: what a crash left under a temporary name is removed at start and
// never used; a restarted node reuses complete modules without downloading.
func TestRestart(t *testing.T) {
	src := newSource()
	src.add(t, ms, map[string]string{"ms/index.js": "v1"})
	root := t.TempDir()
	c := newCache(t, root, src, "")
	if err := c.Ensure(t.Context(), ms); err != nil {
		t.Fatal(err)
	}
	partial := []string{filepath.Join(root, "ms", tmpPrefix+"2.1.4-123"), filepath.Join(root, peersDir, tmpPrefix+"x-1"), filepath.Join(root, tmpPrefix+"old-9")}
	for _, p := range partial {
		if err := os.MkdirAll(filepath.Join(p, "node_modules"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c2 := newCache(t, root, src, "")
	for _, p := range partial {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("partial %s not removed", p)
		}
	}
	if err := c2.Ensure(t.Context(), ms); err != nil || c2.Unpacks() != 0 || src.Opens() != 1 {
		t.Fatalf("restart: %v, %d unpacks, %d downloads", err, c2.Unpacks(), src.Opens())
	}
	// The store was reset and the module rebuilt into other bytes: replaced.
	src.add(t, ms, map[string]string{"ms/index.js": "v2"})
	c3 := newCache(t, root, src, "")
	if err := c3.Ensure(context.Background(), ms); err != nil || c3.Unpacks() != 1 {
		t.Fatalf("rebuilt: %v, %d unpacks", err, c3.Unpacks())
	}
	if b, _ := os.ReadFile(filepath.Join(root, "ms", "2.1.3", "node_modules", "ms", "index.js")); string(b) != "v2" {
		t.Fatalf("content %q, want v2", b)
	}
}
