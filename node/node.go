// Package node assembles one Wharf node: store, engine, runtime image, pool,
// handler, catalog, management API and proxy, and owns its lifecycle from
// start (reconcile leftovers) to drain (remove everything it created).
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/config"
	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/fastpath"
	"github.com/wharfhq/wharf/handler"
	"github.com/wharfhq/wharf/images"
	"github.com/wharfhq/wharf/metrics"
	"github.com/wharfhq/wharf/netpolicy"
	"github.com/wharfhq/wharf/pool"
	"github.com/wharfhq/wharf/proxy"
	"github.com/wharfhq/wharf/secretbox"
	"github.com/wharfhq/wharf/store"
	"github.com/wharfhq/wharf/tenantlog"
	"github.com/wharfhq/wharf/wtstorage"
)

// Node is a running Wharf node.
type Node struct {
	cfg    config.Config
	log    *slog.Logger
	id     string
	closer []func(context.Context) // undone in reverse order on shutdown

	emb     *store.Embedded
	st      *store.Store
	eng     engine.Engine
	image   images.Image
	network string
	pool    *pool.Pool
	handler *handler.Handler
	catalog *catalog.Catalog
	mods    *modules
	storage *wtstorage.Server
	logs    *tenantlog.Service
	proxy   *proxy.Proxy
	metrics *metrics.Metrics
	echo    *echo.Echo
	srv     *http.Server
	fast    *fastpath.Server // in front of srv, unless --http-fast-path=false
	ln      net.Listener

	firewall *netpolicy.Firewall // nil with --firewall=false

	// GeneratedAdminToken is set when this start created the admin token; the
	// caller prints it once. It is never logged.
	GeneratedAdminToken string

	draining atomic.Bool
	bg       sync.WaitGroup
	stopBg   context.CancelFunc
	serveErr chan error
	shutdown sync.Once
}

// Start brings a node up: on return it is serving on Addr(). On error, every
// part already started has been stopped again.
func Start(ctx context.Context, cfg config.Config, eng engine.Engine, logger *slog.Logger) (n *Node, err error) {
	n = &Node{cfg: cfg, log: logger, eng: eng, serveErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n.undo(cctx)
			n = nil
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := n.listen(); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	n.onStop(func(context.Context) { _ = n.ln.Close() })
	if n.id, err = nodeID(cfg); err != nil {
		return nil, err
	}
	n.log = logger.With("node", n.id)
	if err := n.openStore(ctx); err != nil {
		return nil, err
	}
	if err := n.eng.Ping(ctx); err != nil {
		return nil, fmt.Errorf("no Docker engine answers (is dockerd running? `make run` starts one): %w", err)
	}
	if err := n.prepareImage(ctx); err != nil {
		return nil, err
	}
	if err := n.openModules(ctx); err != nil {
		return nil, err
	}
	if err := n.startContainers(ctx); err != nil {
		return nil, err
	}
	if err := n.startDebug(); err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	if err := n.startBuilder(ctx); err != nil {
		return nil, err
	}
	n.startHTTP()
	return n, nil
}

func (n *Node) onStop(f func(context.Context)) { n.closer = append(n.closer, f) }

func (n *Node) undo(ctx context.Context) {
	for i := len(n.closer) - 1; i >= 0; i-- {
		n.closer[i](ctx)
	}
	n.closer = nil
}

// nodeID is the configured id, or one generated once into the data dir so a
// restarted node finds its own leftovers.
func nodeID(cfg config.Config) (string, error) {
	if cfg.NodeID != "" {
		return cfg.NodeID, nil
	}
	path := filepath.Join(cfg.DataDir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		id := strings.TrimSpace(string(b))
		if id == "" {
			return "", fmt.Errorf("%s is empty: delete it or pass --node-id", path)
		}
		return id, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node id: %w", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := "n" + hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	return id, nil
}

func (n *Node) openStore(ctx context.Context) error {
	var key []byte
	var err error
	if n.cfg.SecretsKey != "" {
		key, err = secretbox.ParseKey(n.cfg.SecretsKey)
	} else {
		key, err = secretbox.LoadOrCreateKey(filepath.Join(n.cfg.DataDir, "secrets.key"))
	}
	if err != nil {
		return fmt.Errorf("secrets key: %w", err)
	}
	uri := n.cfg.MongoURI
	opt := store.Options{SecretsKey: key}
	if uri == "" {
		n.emb, err = store.StartEmbedded(ctx, filepath.Join(n.cfg.DataDir, "db"), n.cfg.StoreListen, n.log)
		if err != nil {
			return fmt.Errorf("embedded store: %w", err)
		}
		n.onStop(func(context.Context) { n.emb.Close() })
		uri = n.emb.URI()
		// FerretDB applies updates atomically only within one connection.
		opt.MaxPoolSize = 1
	}
	n.st, err = store.Connect(ctx, uri, opt)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	n.onStop(func(ctx context.Context) { _ = n.st.Close(ctx) })
	n.GeneratedAdminToken, err = n.st.EnsureAdminToken(ctx, n.cfg.AdminToken)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	return nil
}

func (n *Node) prepareImage(ctx context.Context) error {
	if n.cfg.Image != "" {
		ok, err := n.eng.ImageExists(ctx, n.cfg.Image)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("image %s does not exist on this engine", n.cfg.Image)
		}
		// A given image is identified by its reference for the adopt check.
		n.image = images.Image{Tag: n.cfg.Image, Hash: "ref-" + hex.EncodeToString([]byte(n.cfg.Image))}
		return nil
	}
	img, err := images.Ensure(ctx, n.eng, images.Options{}, n.log)
	if err != nil {
		return err
	}
	n.image = img
	return nil
}

func (n *Node) startContainers(ctx context.Context) error {
	n.network = NetworkName(n.id)
	profile, err := seccompProfile(n.cfg.SeccompProfile)
	if err != nil {
		return err
	}
	if err := n.startFirewall(ctx); err != nil {
		return err
	}
	if err := n.ensureNetwork(ctx); err != nil {
		return err
	}
	n.onStop(func(ctx context.Context) {
		n.sweep(ctx)
		if err := n.eng.RemoveNetwork(ctx, n.network); err != nil {
			n.log.Warn("remove network", "err", err)
		}
	})
	if err := n.attachNetwork(ctx); err != nil {
		return err
	}
	n.pool, err = pool.New(pool.Config{
		NodeID: n.id, Image: n.image.Tag, ImageHash: n.image.Hash, Network: n.network,
		Root: filepath.Join(n.cfg.DataDir, "containers"), ModulesDir: filepath.Join(n.cfg.DataDir, "modules"),
		Size: n.cfg.PoolSize, MaxSize: n.cfg.PoolMax, TTL: n.cfg.PoolTTL, RefillHold: n.cfg.PoolRefillHold, MaxWaiting: n.cfg.MaxColdWaiters,
		MaxParallel: n.cfg.PoolParallel, ReadyTimeout: n.cfg.ContainerReady,
		Limits: pool.Limits{
			MemoryBytes: int64(n.cfg.ContainerMemory), NanoCPUs: n.cfg.NanoCPUs(), PidsLimit: n.cfg.ContainerPids,
			NoFile: n.cfg.ContainerNoFile, TmpfsBytes: int64(n.cfg.ContainerTmpfs),
			LogBytes: int64(n.cfg.ContainerLogSize), LogFiles: n.cfg.ContainerLogFiles, LogRate: n.cfg.LogRate,
		},
		Runtime: n.cfg.ContainerRuntime, SeccompProfile: profile,
	}, n.eng, n.log)
	if err != nil {
		return err
	}
	if _, _, err := n.pool.Reconcile(ctx); err != nil {
		return err
	}
	bgctx, cancel := context.WithCancel(context.Background())
	n.stopBg = cancel
	n.onStop(func(ctx context.Context) {
		cancel()
		n.bg.Wait()
		n.pool.Drain(ctx)
	})
	limits := handler.Limits{
		MaxContainers: n.cfg.EffectiveMaxContainers(MemTotal()),
		IdleTimeout:   n.cfg.IdleTimeout, MaxLifetime: n.cfg.MaxLifetime,
	}
	n.startLogs() // before the handler, whose assignments it follows
	n.handler = handler.New(n.pool, handler.Config{Limits: limits, Stats: n.eng.ContainerStats, PidsLimit: n.cfg.ContainerPids,
		Modules: n.mods.cache, Assigned: n.containerAssigned,
		Attach: func(tenant string, c *pool.Container) error { return n.storage.Attach(tenant, c.AppDir) },
		Detach: func(c *pool.Container) { n.storage.Detach(c.AppDir) }}, n.log)
	n.bg.Add(4)
	go func() { defer n.bg.Done(); n.pool.Run(bgctx) }()
	go func() { defer n.bg.Done(); n.watchEvents(bgctx) }()
	go func() { defer n.bg.Done(); n.handler.Watch(bgctx, n.cfg.HealthInterval) }()
	go func() {
		defer n.bg.Done()
		if n.firewall != nil {
			n.firewall.Watch(bgctx, 30*time.Second)
		}
	}()

	n.onStop(n.handler.Close)
	n.bg.Add(1)
	go func() { defer n.bg.Done(); n.handler.RunReaper(bgctx) }()
	n.log.Info("capacity", "max_containers", limits.MaxContainers, "idle_timeout", limits.IdleTimeout,
		"max_lifetime", limits.MaxLifetime, "pool_min", n.cfg.PoolSize, "pool_max", max(n.cfg.PoolSize, n.cfg.PoolMax))

	n.metrics = metrics.New(metrics.Options{TenantLabel: n.cfg.MetricsTenantLabel})
	n.metrics.RegisterNode(n.pool.Stats, func() int { return n.pool.Stats().Target }, n.handler.Stats)
	n.catalog = catalog.New(timedSource{n.st, n.metrics}, n.log)
	// Tenants' containers reach their functions' storage through a socket
	// each (wtstorage); the handler attaches it when a tenant claims one.
	n.storage = wtstorage.New(n.st, n.catalog, n.log)
	n.onStop(func(context.Context) { n.storage.Close() })
	n.proxy = proxy.New(proxy.Config{
		ClaimTimeout: n.cfg.ClaimTimeout, DefaultTimeoutMS: n.cfg.FunctionTimeoutMS(), MaxBodyBytes: int64(n.cfg.MaxBody),
		MaxResponseBytes: int64(n.cfg.MaxResponse), Tenants: n.tenantLimiter(),
		Observer: n.metrics,
	}, n.catalog, n.handler, n.log)
	n.onStop(func(context.Context) { n.proxy.Close() })
	n.bg.Add(1)
	go func() { defer n.bg.Done(); n.followChanges(bgctx) }()
	return nil
}

// watchEvents turns container deaths into drops: a tenant's container is
// unassigned (its next request cold starts), a pooled one is replaced.
func (n *Node) watchEvents(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		evs, errc := n.eng.Events(ctx, map[string]string{engine.LabelNode: n.id})
	loop:
		for {
			select {
			case ev, ok := <-evs:
				if !ok {
					break loop
				}
				backoff = 100 * time.Millisecond
				switch ev.Action {
				case "die", "oom", "destroy":
					if !n.handler.ContainerGone(ev.ContainerID) {
						n.pool.Forget(ctx, ev.ContainerID)
					}
				}
			case err := <-errc:
				n.log.Warn("container event stream broke; reconnecting", "err", err)
				break loop
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// sweep removes whatever container of this node is still there at shutdown,
// e.g. one whose creation was cancelled but completed inside the engine.
func (n *Node) sweep(ctx context.Context) {
	list, err := n.eng.ListContainers(ctx, map[string]string{engine.LabelNode: n.id})
	if err != nil {
		n.log.Warn("sweep containers", "err", err)
		return
	}
	for _, c := range list {
		if err := n.eng.RemoveContainer(ctx, c.ID); err != nil {
			n.log.Warn("sweep container", "container", c.Name, "err", err)
		}
	}
}

// Hooks implementation for the management API.

type hooks struct{ n *Node }

func (h hooks) FunctionChanged(tenant, name string) {
	h.n.catalog.Invalidate(tenant, name)
	h.n.catalog.Prefetch(tenant, name)
	h.n.record(store.ChangeFunction, tenant, name)
}

func (h hooks) TenantDeleted(tenant string) {
	h.n.catalog.InvalidateTenant(tenant)
	h.n.handler.DropTenant(tenant)
	h.n.record(store.ChangeTenant, tenant, "")
}

// ID is the node's id.
func (n *Node) ID() string { return n.id }

// Addr is the address the node serves on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// Pool exposes the pool (stats, tests).
func (n *Node) Pool() *pool.Pool { return n.pool }

// Handler exposes the handler (stats, tests).
func (n *Node) Handler() *handler.Handler { return n.handler }

// Image is the runtime image in use.
func (n *Node) Image() images.Image { return n.image }

// Network is the node's container network.
func (n *Node) Network() string { return n.network }

// Done is closed with the error when the HTTP server stops on its own.
func (n *Node) Done() <-chan error { return n.serveErr }

// Shutdown drains: /readyz fails at once, the listener stops accepting,
// in-flight requests finish (up to ctx), then every container and the network
// of this node are removed and the store is closed.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.shutdown.Do(func() {
		n.draining.Store(true)
		n.log.Info("draining")
		if n.srv != nil {
			shutdown := n.srv.Shutdown
			if n.fast != nil {
				shutdown = func(ctx context.Context) error { return n.fast.Shutdown(ctx, n.ln) }
			}
			if serr := shutdown(ctx); serr != nil {
				err = fmt.Errorf("finish in-flight requests: %w", serr)
				_ = n.srv.Close()
			}
		}
		// Removal must happen even when the drain deadline has passed.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		n.undo(cctx)
		n.log.Info("stopped")
	})
	return err
}
