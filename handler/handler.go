// Package handler gives each tenant one container for life: the first request
// claims a warm container from the pool, later requests reuse it, and a
// container that served a tenant is never given to anyone else.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/pool"
)

// Pool is what the handler needs from the pool.
type Pool interface {
	Take(ctx context.Context) (*pool.Container, error)
	Discard(ctx context.Context, c *pool.Container)
}

// Config configures a Handler.
type Config struct {
	// ColdStartTimeout bounds a detached cold start (claim + owner record),
	// independent of the requests waiting for it.
	ColdStartTimeout time.Duration
	// Probe checks a runner after a timeout; default pool.HTTPProbe.
	Probe func(ctx context.Context, ip string) error
	// Assigned, when set, learns of each container given to a tenant, with
	// the time it was taken from the pool, ready (the node follows its
	// output from then on, so nothing of the runner's start shows).
	Assigned func(tenant string, c *pool.Container, since time.Time)
}

// Assignment is a tenant's container.
type Assignment struct {
	Tenant string
	C      *pool.Container
	Since  time.Time

	mu          sync.RWMutex
	provisioned map[string]bool // "name@version" written into the app dir
	gone        atomic.Bool
	lastUsed    atomic.Int64 // unix nanoseconds
}

// Gone reports whether the assignment was dropped (its container is removed).
func (a *Assignment) Gone() bool { return a.gone.Load() }

// Handler maps tenants to their containers.
type Handler struct {
	pool Pool
	cfg  Config
	log  *slog.Logger

	mu       sync.Mutex
	byTenant map[string]*Assignment
	byID     map[string]*Assignment
	closed   bool
	sf       singleflight.Group
	wg       sync.WaitGroup // background discards and probes

	coldStarts atomic.Int64
}

// New returns a handler drawing containers from p.
func New(p Pool, cfg Config, logger *slog.Logger) *Handler {
	if cfg.ColdStartTimeout <= 0 {
		cfg.ColdStartTimeout = 30 * time.Second
	}
	if cfg.Probe == nil {
		cfg.Probe = pool.HTTPProbe
	}
	return &Handler{pool: p, cfg: cfg, log: logger.With("component", "handler"),
		byTenant: map[string]*Assignment{}, byID: map[string]*Assignment{}}
}

// ErrClosed is returned once the handler is shutting down.
var ErrClosed = errors.New("handler: node is shutting down")

func (h *Handler) current(tenant string) *Assignment {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := h.byTenant[tenant]; a != nil && !a.gone.Load() {
		return a
	}
	return nil
}

// Acquire returns tenant's container, claiming one from the pool on the
// tenant's first request. Concurrent first requests share one claim; each
// waiter gives up on its own ctx, while the claim itself runs detached with
// its own deadline, so a claim finished after its first waiter left still
// serves the next request.
func (h *Handler) Acquire(ctx context.Context, tenant string) (a *Assignment, cold bool, err error) {
	if a := h.current(tenant); a != nil {
		a.lastUsed.Store(time.Now().UnixNano())
		return a, false, nil
	}
	ch := h.sf.DoChan(tenant, func() (any, error) { return h.claim(tenant) })
	select {
	case r := <-ch:
		if r.Err != nil {
			if errors.Is(r.Err, pool.ErrEmpty) {
				return nil, true, errs.Unavailable("no_container", 1, r.Err, "No container is available to run this function right now; retry shortly.")
			}
			if errors.Is(r.Err, ErrClosed) {
				return nil, true, errs.Unavailable("shutting_down", 5, r.Err, "This node is shutting down; retry shortly.")
			}
			return nil, true, fmt.Errorf("claim container for %s: %w", tenant, r.Err)
		}
		a := r.Val.(*Assignment)
		a.lastUsed.Store(time.Now().UnixNano())
		return a, true, nil
	case <-ctx.Done():
		return nil, true, errs.Unavailable("no_container", 1, ctx.Err(), "No container could be had in time; retry shortly.")
	}
}

func (h *Handler) claim(tenant string) (*Assignment, error) {
	// A flight that finished just before this one started may have assigned one.
	if a := h.current(tenant); a != nil {
		return a, nil
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ColdStartTimeout)
	defer cancel()
	start := time.Now()
	c, err := h.pool.Take(ctx)
	if err != nil {
		return nil, err
	}
	taken := time.Now() // the runner is ready: all it prints from now on is the tenant's
	// Record ownership before anything of the tenant reaches the container,
	// so a crash from here on can never put it back into the pool.
	if err := pool.MarkOwner(c, tenant); err != nil {
		h.pool.Discard(ctx, c)
		return nil, err
	}
	a := &Assignment{Tenant: tenant, C: c, Since: time.Now(), provisioned: map[string]bool{}}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.pool.Discard(ctx, c)
		return nil, ErrClosed
	}
	h.byTenant[tenant] = a
	h.byID[c.ID] = a
	h.mu.Unlock()
	h.coldStarts.Add(1)
	h.log.Info("container assigned", "tenant", tenant, "container", c.Name, "claim", time.Since(start))
	if h.cfg.Assigned != nil {
		h.cfg.Assigned(tenant, c, taken)
	}
	return a, nil
}

// Provision makes sure fn's current version is present in a's container.
// Versions are written once into their own directory, so an update reaches
// a running container without restarting it.
func (h *Handler) Provision(a *Assignment, fn *catalog.Function) error {
	k := fmt.Sprintf("%s@%d", fn.Name, fn.Version)
	a.mu.RLock()
	ok := a.provisioned[k]
	a.mu.RUnlock()
	if ok {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.provisioned[k] {
		return nil
	}
	if err := writeFunction(a.C.AppDir, fn); err != nil {
		return fmt.Errorf("provision %s for %s: %w", k, a.Tenant, err)
	}
	a.provisioned[k] = true
	return nil
}

// Fail drops a's container after it failed a request (connection refused,
// reset, runner gone): the tenant's next request gets a fresh one.
func (h *Handler) Fail(a *Assignment, reason string) {
	if h.drop(a) {
		h.log.Warn("container dropped", "tenant", a.Tenant, "container", a.C.Name, "reason", reason)
	}
}

// Suspect checks a's runner after a request timed out; a runner that does not
// answer its probe (a blocked event loop) has its container replaced.
func (h *Handler) Suspect(a *Assignment) {
	if a.gone.Load() {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := h.cfg.Probe(ctx, a.C.IP); err != nil {
			h.Fail(a, "runner unresponsive after a timeout: "+err.Error())
		}
	}()
}

// ContainerGone handles an engine event saying a container died. It reports
// whether the container was a tenant's.
func (h *Handler) ContainerGone(id string) bool {
	h.mu.Lock()
	a := h.byID[id]
	h.mu.Unlock()
	if a == nil {
		return false
	}
	h.Fail(a, "container exited")
	return true
}

// DropTenant removes a tenant's container (the tenant was deleted).
func (h *Handler) DropTenant(tenant string) {
	h.mu.Lock()
	a := h.byTenant[tenant]
	h.mu.Unlock()
	if a != nil && h.drop(a) {
		h.log.Info("container removed with its tenant", "tenant", tenant, "container", a.C.Name)
	}
}

// drop unmaps a and removes its container in the background. Only the first
// caller wins, so concurrent failure reports remove a container once.
func (h *Handler) drop(a *Assignment) bool {
	if !a.gone.CompareAndSwap(false, true) {
		return false
	}
	h.mu.Lock()
	if h.byTenant[a.Tenant] == a {
		delete(h.byTenant, a.Tenant)
	}
	delete(h.byID, a.C.ID)
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h.pool.Discard(ctx, a.C)
	}()
	return true
}

// Tenants returns the number of tenants holding a container.
func (h *Handler) Tenants() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byTenant)
}

// ColdStarts returns the number of containers claimed so far.
func (h *Handler) ColdStarts() int64 { return h.coldStarts.Load() }

// Close refuses new claims and removes every tenant container.
func (h *Handler) Close(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	all := make([]*Assignment, 0, len(h.byTenant))
	for _, a := range h.byTenant {
		all = append(all, a)
	}
	h.mu.Unlock()
	for _, a := range all {
		h.drop(a)
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
