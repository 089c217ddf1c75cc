// Package modulecache keeps, on one node, the built modules its functions
// need: the first time a function on this node needs name@version, the
// closure is downloaded from the store, its sha256 verified, and unpacked
// into a temporary directory that is then renamed into place
// (<root>/<name>/<version>/node_modules). The root is mounted read-only at
// /modules in every tenant container and shared by all tenants.
//
// A directory is complete or absent: unpacks happen under a temporary name
// (".tmp-*"), which nothing ever reads and which New removes, so a crash
// mid-unpack leaves nothing that is used. Concurrent needs of one module
// unpack it once.
package modulecache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/closure"
	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/modstore"
	"github.com/wharfhq/wharf/npmspec"
)

// Source is where built modules come from (*modstore.Store).
type Source interface {
	Result(ctx context.Context, r npmspec.Ref) (modstore.Result, bool, error)
	Status(ctx context.Context, r npmspec.Ref) (modstore.Status, error)
	OpenClosure(ctx context.Context, fileID string) (io.ReadCloser, int64, error)
}

var _ Source = (*modstore.Store)(nil)

// Names inside the root. Module directories are named by npmspec.PathName,
// which never starts with '.', so these never collide with one.
const (
	tmpPrefix = ".tmp-"
	peersDir  = ".peers"
	metaFile  = "closure.json"
	// DefaultMount is where containers see the root.
	DefaultMount = "/modules"
	// DefaultMaxUnpacked bounds one closure on disk (the builder's limit is 200 MB).
	DefaultMaxUnpacked = 1 << 30
	// loadTimeout bounds one download and unpack, detached from any request.
	loadTimeout = 5 * time.Minute
)

// Config configures a Cache.
type Config struct {
	Root        string // host directory; containers mount it read-only at Mount
	Mount       string // default /modules
	MaxUnpacked int64  // default 1 GiB
}

// Cache is a node's store of unpacked modules.
type Cache struct {
	cfg Config
	src Source
	log *slog.Logger

	sf    singleflight.Group
	mu    sync.RWMutex
	ready map[string]meta              // "name@version" -> what is unpacked
	links map[string]map[string]string // canonical deps -> Link's answer

	unpacks int64        // closures unpacked by this process (tests, logs)
	hits    atomic.Int64 // requests for a module already on the node (metrics)
}

// meta is written beside a module's node_modules as closure.json.
type meta struct {
	SHA256 string   `json:"sha256"`
	Peers  []string `json:"peers,omitempty"`
}

// New prepares the cache under cfg.Root and removes what a crashed unpack left.
func New(cfg Config, src Source, logger *slog.Logger) (*Cache, error) {
	if cfg.Root == "" {
		return nil, errors.New("modulecache: empty root")
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultMount
	}
	if cfg.MaxUnpacked <= 0 {
		cfg.MaxUnpacked = DefaultMaxUnpacked
	}
	if err := os.MkdirAll(filepath.Join(cfg.Root, peersDir), 0o755); err != nil {
		return nil, fmt.Errorf("modulecache: %w", err)
	}
	// The root is mounted into containers: it must be readable by their uid.
	for _, d := range []string{cfg.Root, filepath.Join(cfg.Root, peersDir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("modulecache: %w", err)
		}
	}
	c := &Cache{cfg: cfg, src: src, log: logger.With("component", "modulecache"),
		ready: map[string]meta{}, links: map[string]map[string]string{}}
	if err := c.removeTemps(); err != nil {
		return nil, err
	}
	return c, nil
}

// removeTemps deletes every temporary name under the root: partial unpacks
// and peer directories a crash left, and directories set aside for removal.
func (c *Cache) removeTemps() error {
	top, err := os.ReadDir(c.cfg.Root)
	if err != nil {
		return fmt.Errorf("modulecache: %w", err)
	}
	var removed int
	rm := func(p string) {
		if err := os.RemoveAll(p); err != nil {
			c.log.Warn("removing a partial unpack failed", "path", p, "err", err)
			return
		}
		removed++
	}
	for _, e := range top {
		p := filepath.Join(c.cfg.Root, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), tmpPrefix):
			rm(p)
		case e.IsDir():
			sub, err := os.ReadDir(p)
			if err != nil {
				return fmt.Errorf("modulecache: %w", err)
			}
			for _, s := range sub {
				if strings.HasPrefix(s.Name(), tmpPrefix) {
					rm(filepath.Join(p, s.Name()))
				}
			}
		}
	}
	if removed > 0 {
		c.log.Info("removed partial unpacks", "count", removed)
	}
	return nil
}

// Hits is how many times a module was already present on the node.
func (c *Cache) Hits() int64 { return c.hits.Load() }

// Unpacks is how many closures this process unpacked.
func (c *Cache) Unpacks() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.unpacks
}

func (c *Cache) moduleDir(r npmspec.Ref) string {
	return filepath.Join(c.cfg.Root, npmspec.PathName(r.Name), r.Version)
}

// ModulePath is where a container finds module r's own package directory.
func (c *Cache) ModulePath(r npmspec.Ref) string {
	return c.cfg.Mount + "/" + npmspec.PathName(r.Name) + "/" + r.Version + "/node_modules/" + r.Name
}

// Error codes of a module that cannot be used yet (building) or ever (failed).
const (
	codeModuleNotReady = "module_not_ready"
	codeModuleFailed   = "module_failed"
)

func notReady(r npmspec.Ref) error {
	return errs.Unavailable(codeModuleNotReady, 2, nil,
		"Module %s is still being built; retry shortly (GET /api/v1/modules/%s shows its status).", r, r)
}

func moduleFailed(r npmspec.Ref, why string) error {
	return errs.Unavailable(codeModuleFailed, 0, nil,
		"Module %s failed to build, so this function cannot run: %s (GET /api/v1/modules/%s shows the build log).",
		r, strings.TrimSuffix(why, "."), r)
}

// Ensure makes module r present on this node, downloading and unpacking it
// the first time. It answers a 503 errs.Error when r is not built yet or its
// build failed. Concurrent calls for one module share one download; the
// download runs detached, so a caller giving up does not waste it.
func (c *Cache) Ensure(ctx context.Context, r npmspec.Ref) error {
	_, err := c.ensure(ctx, r)
	return err
}

func (c *Cache) ensure(ctx context.Context, r npmspec.Ref) (meta, error) {
	key := r.String()
	c.mu.RLock()
	m, ok := c.ready[key]
	c.mu.RUnlock()
	if ok {
		c.hits.Add(1)
		return m, nil
	}
	if !r.Valid() {
		return meta{}, fmt.Errorf("modulecache: invalid module %q", key)
	}
	ch := c.sf.DoChan(key, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		return c.load(lctx, r)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return meta{}, res.Err
		}
		return res.Val.(meta), nil
	case <-ctx.Done():
		return meta{}, errs.Unavailable("module_loading", 2, ctx.Err(), "Module %s is still being unpacked on this node; retry shortly.", r)
	}
}

// load is Ensure's slow path: ask the store, reuse what is on disk when it
// is the same closure, else download, verify and unpack.
func (c *Cache) load(ctx context.Context, r npmspec.Ref) (meta, error) {
	res, ok, err := c.src.Result(ctx, r)
	if err != nil {
		return meta{}, errs.Unavailable("store_unavailable", 2, err, "The module store could not be read; retry shortly.")
	}
	if !ok {
		// No result: building, or its builds failed for transient reasons.
		st, err := c.src.Status(ctx, r)
		if err == nil && st.Status == modstore.StatusFailed {
			return meta{}, moduleFailed(r, st.Error+"; deploying the function again retries the build")
		}
		return meta{}, notReady(r)
	}
	if res.Status != modstore.StatusReady {
		return meta{}, moduleFailed(r, res.Error)
	}
	m := meta{SHA256: res.SHA256, Peers: res.Peers}
	dir := c.moduleDir(r)
	if onDisk, err := readMeta(dir); err == nil && onDisk.SHA256 == res.SHA256 {
		c.remember(r, m, false) // unpacked by an earlier run of this node
		return m, nil
	}
	start := time.Now()
	if err := c.unpack(ctx, r, res, dir, m); err != nil {
		return meta{}, fmt.Errorf("modulecache: %s: %w", r, err)
	}
	c.remember(r, m, true)
	c.log.Info("module unpacked", "module", r.String(), "bytes", res.Size, "files", res.Files,
		"duration", time.Since(start).Round(time.Millisecond))
	return m, nil
}

func (c *Cache) remember(r npmspec.Ref, m meta, unpacked bool) {
	c.mu.Lock()
	c.ready[r.String()] = m
	if unpacked {
		c.unpacks++
	}
	c.mu.Unlock()
}

// unpack downloads the closure into a temporary directory beside dir,
// verifies its sha256, flushes it to disk and renames it to dir.
func (c *Cache) unpack(ctx context.Context, r npmspec.Ref, res modstore.Result, dir string, m meta) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, tmpPrefix+r.Version+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	rc, _, err := c.src.OpenClosure(ctx, res.FileID)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := closure.Unpack(io.TeeReader(rc, h), tmp, c.cfg.MaxUnpacked); err != nil {
		return err
	}
	if _, err := io.Copy(h, rc); err != nil { // trailing bytes count too
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != res.SHA256 {
		return fmt.Errorf("closure sha256 %s does not match the recorded %s", got, res.SHA256)
	}
	if err := writeMeta(tmp, m); err != nil {
		return err
	}
	if err := syncFS(tmp); err != nil {
		return err
	}
	// A directory of the same name holds another closure (the store was reset
	// and the module rebuilt): set it aside, then publish.
	if _, err := os.Lstat(dir); err == nil {
		old, err := os.MkdirTemp(parent, tmpPrefix+"old-")
		if err != nil {
			return err
		}
		if err := os.Rename(dir, filepath.Join(old, "x")); err != nil {
			return err
		}
		defer os.RemoveAll(old)
	}
	return os.Rename(tmp, dir)
}

func readMeta(dir string) (meta, error) {
	var m meta
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return m, err
	}
	err = json.Unmarshal(b, &m)
	return m, err
}

func writeMeta(dir string, m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, metaFile), b, 0o644)
}

// syncFS flushes the file system holding dir, so a directory renamed into
// place after it survives a power loss with its content (one call instead of
// an fsync per file).
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}
