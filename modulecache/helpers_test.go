package modulecache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wharfhq/wharf/closure"
	"github.com/wharfhq/wharf/modstore"
	"github.com/wharfhq/wharf/npmspec"
)

// fakeSource stands in for the store (speed): results and closures in memory.
type fakeSource struct {
	mu      sync.Mutex
	results map[string]modstore.Result
	states  map[string]modstore.Status // of modules without a result
	files   map[string][]byte
	opens   int
	gate    chan struct{} // when set, OpenClosure waits for it
}

func newSource() *fakeSource {
	return &fakeSource{results: map[string]modstore.Result{}, states: map[string]modstore.Status{}, files: map[string][]byte{}}
}

func (f *fakeSource) Result(_ context.Context, r npmspec.Ref) (modstore.Result, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res, ok := f.results[r.String()]
	return res, ok, nil
}

func (f *fakeSource) Status(_ context.Context, r npmspec.Ref) (modstore.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.states[r.String()]; ok {
		return st, nil
	}
	return modstore.Status{Name: r.Name, Version: r.Version, Status: modstore.StatusBuilding}, nil
}

func (f *fakeSource) OpenClosure(_ context.Context, id string) (io.ReadCloser, int64, error) {
	f.mu.Lock()
	f.opens++
	b := f.files[id]
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func (f *fakeSource) Opens() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens
}

// add packs files (relative to node_modules) into a ready module.
func (f *fakeSource) add(t *testing.T, r npmspec.Ref, files map[string]string) modstore.Result {
	t.Helper()
	root := t.TempDir()
	for rel, body := range files {
		p := filepath.Join(root, "node_modules", rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	st, err := closure.Pack(root, &buf, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	res := modstore.Result{Name: r.Name, Version: r.Version, Status: modstore.StatusReady, FileID: r.String(),
		SHA256: hex.EncodeToString(sum[:]), Size: int64(buf.Len()), Files: st.Files, Peers: st.Peers}
	f.mu.Lock()
	f.results[r.String()] = res
	f.files[r.String()] = buf.Bytes()
	f.mu.Unlock()
	return res
}

func newCache(t *testing.T, root string, src Source, mount string) *Cache {
	t.Helper()
	c, err := New(Config{Root: root, Mount: mount}, src, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ref(name, version string) npmspec.Ref { return npmspec.Ref{Name: name, Version: version} }
