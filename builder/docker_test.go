package builder

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/images"
	"github.com/wharfhq/wharf/modstore"
	"github.com/wharfhq/wharf/npmspec"
	"github.com/wharfhq/wharf/store/storetest"
)

// realBuilder starts an embedded store and a builder on the real Docker
// engine and runtime image; it is stopped and its containers removed at cleanup.
func realBuilder(t *testing.T, cfg Config) (*Builder, *modstore.Store) {
	t.Helper()
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("skipping the real-Docker test: `docker info` failed (%v): %.200s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	q, err := modstore.Dial(ctx, storetest.Start(t, logger), "", modstore.Options{RetryDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	eng, err := engine.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	img, err := images.Ensure(ctx, eng, images.Options{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ID = "tb" + randHex(4)
	cfg.Image = img.Tag
	cfg.WorkDir = t.TempDir()
	cfg.Poll = 100 * time.Millisecond
	b, err := New(cfg, eng, q, logger)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		<-done
		list, _ := eng.ListContainers(context.Background(), map[string]string{engine.LabelNode: cfg.ID})
		for _, c := range list {
			t.Errorf("build container %s left behind", c.Name)
			_ = eng.RemoveContainer(context.Background(), c.ID)
		}
	})
	return b, q
}

func waitFinal(t *testing.T, q *modstore.Store, r npmspec.Ref, timeout time.Duration) modstore.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := q.Status(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if st.Final() {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %s after %v", r, st.Status, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Invariant: a module from the real npm registry is built in a container,
// stored with a hash that matches its bytes, and holds the package's files;
// an unknown package fails for good with npm's own error in the log, on the
// first attempt.
func TestBuildFromRealRegistry(t *testing.T) {
	t.Parallel() // each has its own store, builder id and containers; both wait on npm
	b, q := realBuilder(t, Config{})
	ctx := t.Context()
	debug := npmspec.Ref{Name: "debug", Version: "4.3.4"}
	missing := npmspec.Ref{Name: "wharf-no-such-package-" + randHex(6), Version: "1.0.0"}
	if _, _, err := q.Enqueue(ctx, []npmspec.Ref{debug, missing}); err != nil {
		t.Fatal(err)
	}
	b.Wake()

	st := waitFinal(t, q, debug, 2*time.Minute)
	if st.Status != modstore.StatusReady || st.Attempts != 1 {
		t.Fatalf("debug: %+v", st)
	}
	res := st.Result
	if res.Packages != 2 || res.Files == 0 || res.UnpackedSize == 0 || res.Size == 0 || len(res.SHA256) != 64 {
		t.Fatalf("result %+v", res)
	}
	rc, _, err := q.OpenClosure(ctx, res.FileID)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	zr, err := gzip.NewReader(io.TeeReader(rc, h))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	tr := tar.NewReader(zr)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[hd.Name] = true
	}
	_, _ = io.Copy(io.Discard, zr)
	if hex.EncodeToString(h.Sum(nil)) != res.SHA256 {
		t.Fatal("stored closure does not match its sha256")
	}
	// debug@4.3.4 brings its own ms (2.1.2), flattened beside it.
	for _, want := range []string{"node_modules/debug/package.json", "node_modules/debug/src/index.js", "node_modules/ms/index.js"} {
		if !names[want] {
			t.Errorf("closure lacks %s", want)
		}
	}

	st = waitFinal(t, q, missing, 2*time.Minute)
	if st.Status != modstore.StatusFailed || st.Attempts != 1 || !strings.Contains(st.Error, "E404") ||
		!strings.Contains(st.Result.Log, "404 Not Found") {
		t.Fatalf("missing package: %+v, log %q", st, st.Result.Log)
	}
	if n := b.Builds(); n != 2 {
		t.Fatalf("%d npm runs, want 2", n)
	}
}

// Invariant: a module whose closure exceeds the size limit fails for good
// with a clear message, and nothing of it is stored.
func TestBuildTooLarge(t *testing.T) {
	t.Parallel()
	_, q := realBuilder(t, Config{MaxClosure: 100 << 10}) // lodash is ~1.4 MB unpacked
	lodash := npmspec.Ref{Name: "lodash", Version: "4.17.21"}
	if _, _, err := q.Enqueue(t.Context(), []npmspec.Ref{lodash}); err != nil {
		t.Fatal(err)
	}
	st := waitFinal(t, q, lodash, 2*time.Minute)
	if st.Status != modstore.StatusFailed || !strings.Contains(st.Error, "larger than the limit of 100KiB") {
		t.Fatalf("lodash with a 100 KB limit: %+v", st)
	}
	if st.Result.FileID != "" {
		t.Fatal("a too large closure was stored")
	}
}
