package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/wharfhq/wharf/builder"
	"github.com/wharfhq/wharf/buildnet"
	"github.com/wharfhq/wharf/config"
	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/mgmt"
	"github.com/wharfhq/wharf/modstore"
	"github.com/wharfhq/wharf/modulecache"
	"github.com/wharfhq/wharf/npmspec"
	"github.com/wharfhq/wharf/pool"
)

// waitPoll is how often a wait for module builds reads their status.
const waitPoll = 100 * time.Millisecond

// modules is the node's module service (mgmt.Modules): the build queue in
// the store, the builder this node runs (if any), and the node's module cache.
type modules struct {
	q       *modstore.Store
	cache   *modulecache.Cache
	b       *builder.Builder // nil: builders run elsewhere
	log     *slog.Logger
	prepare singleflight.Group
	// prepareFor bounds a background wait for builds after a deploy: every
	// attempt may take the whole build timeout.
	prepareFor time.Duration
	stop       context.Context // ends at shutdown
}

var _ mgmt.Modules = (*modules)(nil)

// openModules opens the module queue on the node's store and the node's
// module cache (the directory every container mounts at /modules); the
// builder starts later, once the pool has reconciled the node's containers.
func (n *Node) openModules(ctx context.Context) error {
	q, err := modstore.New(ctx, n.st.Database(), modstore.Options{MaxAttempts: n.cfg.Build.Attempts})
	if err != nil {
		return err
	}
	cache, err := modulecache.New(modulecache.Config{
		Root: filepath.Join(n.cfg.DataDir, "modules"), Mount: pool.ModulesMount,
		MaxUnpacked: 2 * int64(n.cfg.Build.MaxClosure),
	}, q, n.log)
	if err != nil {
		return err
	}
	stop, cancel := context.WithCancel(context.Background())
	n.onStop(func(context.Context) { cancel() })
	n.mods = &modules{q: q, cache: cache, log: n.log.With("component", "modules"), stop: stop,
		prepareFor: time.Duration(n.cfg.Build.Attempts+1) * (n.cfg.Build.Timeout + n.cfg.Build.Lease)}
	return nil
}

// startBuilder runs the in-process builder (unless --builders 0) on the
// node's build network until shutdown.
func (n *Node) startBuilder(ctx context.Context) error {
	if n.cfg.Build.Concurrency == 0 {
		n.metrics.RegisterModules(nil, n.mods.cache.Unpacks, n.mods.cache.Hits)
		return nil
	}
	bn, err := StartBuildNet(ctx, n.cfg, n.id, n.eng, n.log)
	if err != nil {
		return err
	}
	// Registered first, so it runs after the builder's stop has removed the
	// build containers.
	n.onStop(func(ctx context.Context) {
		if err := bn.Close(ctx); err != nil {
			n.log.Warn("remove the build network", "err", err)
		}
	})
	b, err := builder.New(BuilderConfig(n.cfg, n.id, n.image.Tag, bn), n.eng, n.mods.q, n.log)
	if err != nil {
		return err
	}
	n.mods.b = b
	n.metrics.RegisterModules(b.Builds, n.mods.cache.Unpacks, n.mods.cache.Hits)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	// Stopping cancels the builds under way: their containers are removed and
	// their jobs handed back to the queue for another builder.
	n.onStop(func(context.Context) { cancel(); <-done })
	return nil
}

// StartBuildNet starts the build network of a node or of `wharf builder`:
// build containers reach the registry and nothing else.
func StartBuildNet(ctx context.Context, cfg config.Config, id string, eng engine.Engine, logger *slog.Logger) (*buildnet.Net, error) {
	return buildnet.Start(ctx, eng, buildnet.Config{ID: id, Registry: cfg.Build.NPMRegistry, Firewall: cfg.Firewall}, logger)
}

// BuilderConfig is the builder configuration of a node or of `wharf builder`,
// whose builds run on bn.
func BuilderConfig(cfg config.Config, id, image string, bn *buildnet.Net) builder.Config {
	b := cfg.Build
	return builder.Config{
		ID: id, Image: image, WorkDir: filepath.Join(cfg.DataDir, "builds"), Network: bn.Name(), Proxy: bn.ProxyURL(),
		Registry: b.NPMRegistry, Timeout: b.Timeout, Lease: b.Lease, MaxClosure: int64(b.MaxClosure),
		Memory: int64(b.Memory), NanoCPUs: b.NanoCPUs(), Pids: b.Pids, Tmpfs: int64(b.Tmpfs),
		Concurrency: b.Concurrency, Runtime: cfg.ContainerRuntime,
	}
}

// Request enqueues the modules not built yet, wakes this node's builder, and
// starts making them present on this node as soon as they are built, so a
// deploy's first invocation finds them unpacked.
func (m *modules) Request(ctx context.Context, refs []npmspec.Ref) ([]modstore.Status, error) {
	sts, created, err := m.q.Enqueue(ctx, refs)
	if err != nil {
		return nil, err
	}
	if created > 0 && m.b != nil {
		m.b.Wake()
	}
	m.prefetch(refs)
	return sts, nil
}

// prefetch waits in the background for refs' builds and unpacks them here
// (once per set of modules at a time).
func (m *modules) prefetch(refs []npmspec.Ref) {
	key := refsKey(refs)
	go m.prepare.Do(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(m.stop, m.prepareFor)
		defer cancel()
		if _, err := m.Wait(ctx, refs); err != nil && ctx.Err() == nil {
			m.log.Warn("preparing modules failed", "modules", key, "err", err)
		}
		return nil, nil
	})
}

func refsKey(refs []npmspec.Ref) string {
	parts := make([]string, len(refs))
	for i, r := range refs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func (m *modules) States(ctx context.Context, refs []npmspec.Ref) ([]modstore.Status, error) {
	return m.q.States(ctx, refs)
}

func (m *modules) Status(ctx context.Context, r npmspec.Ref) (modstore.Status, error) {
	return m.q.Status(ctx, r)
}

// Wait returns once every module is final (ready ones unpacked on this node,
// with the peer instances the set needs) or ctx ends.
func (m *modules) Wait(ctx context.Context, refs []npmspec.Ref) ([]modstore.Status, error) {
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for {
		sts, err := m.q.States(ctx, refs)
		if err != nil {
			return nil, err
		}
		if allReady(sts) {
			deps := make(map[string]string, len(refs))
			for _, r := range refs {
				deps[r.Name] = r.Version
			}
			if _, err := m.cache.Link(ctx, deps); err != nil {
				return sts, fmt.Errorf("unpacking modules on this node: %w", err)
			}
			return sts, nil
		}
		if anyFailed(sts) {
			return sts, nil
		}
		select {
		case <-ctx.Done():
			return sts, nil
		case <-t.C:
		}
	}
}

func allReady(sts []modstore.Status) bool {
	for _, st := range sts {
		if st.Status != modstore.StatusReady {
			return false
		}
	}
	return true
}

// anyFailed: the set can never become ready, and the others need not be waited for.
func anyFailed(sts []modstore.Status) bool {
	for _, st := range sts {
		if st.Status == modstore.StatusFailed {
			return true
		}
	}
	return false
}

// LoadID is the id a process serving cfg.DataDir goes by: --node-id, or one
// generated once into the data dir (`wharf builder` uses it too).
func LoadID(cfg config.Config) (string, error) { return nodeID(cfg) }
