// Package handler gives each tenant one container for life: the first request
// claims a warm container from the pool, later requests reuse it, and a
// container that served a tenant is never given to anyone else.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/engine"
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
	// Limits bound the node's tenant containers (capacity, idle, lifetime).
	Limits Limits
	// Stats samples a container's resource use (the engine's), for the
	// watchdog and the check after a timeout; nil disables both.
	Stats func(ctx context.Context, id string) (engine.ContainerStats, error)
	// PidsLimit is the containers' pids limit, when the engine reports none.
	PidsLimit int64
	// Backoff slows down tenants whose containers keep dying; zero: DefaultBackoff.
	Backoff Backoff
	// Modules resolves a function's dependencies to the paths its
	// node_modules links to (the node's module cache); nil refuses functions
	// that have dependencies.
	Modules Modules
	// Assigned, when set, learns of each container given to a tenant, with
	// the time it was taken from the pool, ready (the node follows its
	// output from then on, so nothing of the runner's start shows).
	Assigned func(tenant string, c *pool.Container, since time.Time)
	// Attach, when set, prepares a claimed container for its tenant before
	// any of the tenant's requests reaches it (the storage socket); an error
	// fails the claim and the container is removed.
	Attach func(tenant string, c *pool.Container) error
	// Detach undoes Attach just before the container is removed.
	Detach func(c *pool.Container)
}

// Modules gives the link targets, as containers see them, of a function's
// dependencies, making them present on the node first (modulecache.Cache).
type Modules interface {
	Link(ctx context.Context, deps map[string]string) (map[string]string, error)
}

// Assignment is a tenant's container.
type Assignment struct {
	Tenant string
	C      *pool.Container
	Since  time.Time

	mu          sync.RWMutex
	provisioned map[string]bool // "name@version" written into the app dir
	gone        atomic.Bool     // unmapped: no new request may hold it

	// Guarded by Handler.mu: a request holds the assignment from Acquire to
	// Release, and eviction only takes assignments nobody holds.
	inflight  int
	lastUsed  time.Time
	discarded bool // its container removal has been started
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
	claiming int // claims that reserved a place (capacity) and are under way
	sf       singleflight.Group
	bg       tracker // background discards and probes
	deaths   *deathLog

	coldStarts atomic.Int64
	evictions  map[string]*atomic.Int64 // by reason; keys fixed at New
}

// New returns a handler drawing containers from p.
func New(p Pool, cfg Config, logger *slog.Logger) *Handler {
	if cfg.ColdStartTimeout <= 0 {
		cfg.ColdStartTimeout = 30 * time.Second
	}
	if cfg.Probe == nil {
		cfg.Probe = pool.HTTPProbe
	}
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = DefaultBackoff
	}
	h := &Handler{pool: p, cfg: cfg, log: logger.With("component", "handler"),
		byTenant: map[string]*Assignment{}, byID: map[string]*Assignment{},
		evictions: map[string]*atomic.Int64{}, deaths: newDeathLog(cfg.Backoff)}
	for _, r := range []string{ReasonIdle, ReasonCapacity, ReasonLifetime, ReasonDied, ReasonFailed, ReasonTenant, ReasonShutdown} {
		h.evictions[r] = &atomic.Int64{}
	}
	return h
}

// ErrCapacity is returned when the node holds its maximum of tenant
// containers and every one of them is serving a request.
var ErrCapacity = errors.New("handler: node at capacity")

// ErrClosed is returned once the handler is shutting down.
var ErrClosed = errors.New("handler: node is shutting down")

// current returns tenant's live assignment, held for one request when hold is set.
func (h *Handler) current(tenant string, hold bool) *Assignment {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := h.byTenant[tenant]; a != nil && !a.gone.Load() {
		if hold {
			a.inflight++
			a.lastUsed = time.Now()
		}
		return a
	}
	return nil
}

// hold takes a hold on a for one request unless it was unmapped meanwhile.
func (h *Handler) hold(a *Assignment) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a.gone.Load() {
		return false
	}
	a.inflight++
	a.lastUsed = time.Now()
	return true
}

// Release ends a request's hold on a. A container unmapped while it was
// serving (retired) is removed once its last request ends.
func (h *Handler) Release(a *Assignment) {
	h.mu.Lock()
	a.inflight--
	a.lastUsed = time.Now()
	discard := a.gone.Load() && a.inflight == 0 && !a.discarded
	if discard {
		a.discarded = true
	}
	h.mu.Unlock()
	if discard {
		h.discardAsync(a)
	}
}

// Acquire returns tenant's container, held for one request: the caller must
// Release it when the request ends. On the tenant's first request it claims a
// container from the pool. Concurrent first requests share one claim; each
// waiter gives up on its own ctx, while the claim itself runs detached with
// its own deadline, so a claim finished after its first waiter left still
// serves the next request.
// Warm returns the tenant's container, held, when it has one; nil means a
// request must go through Acquire. The proxy's warm path uses it to skip the
// claim deadline's timer.
func (h *Handler) Warm(tenant string) *Assignment { return h.current(tenant, true) }

func (h *Handler) Acquire(ctx context.Context, tenant string) (a *Assignment, cold bool, err error) {
	for {
		if a := h.current(tenant, true); a != nil {
			return a, false, nil
		}
		if wait := h.deaths.delay(tenant, time.Now()); wait > 0 {
			return nil, true, errs.Unavailable("tenant_backoff", int(math.Ceil(wait.Seconds())), nil,
				"This tenant's containers failed repeatedly; a new one is available in %s.", wait.Round(time.Second))
		}
		ch := h.sf.DoChan(tenant, func() (any, error) { return h.claim(tenant) })
		select {
		case r := <-ch:
			if r.Err != nil {
				return nil, true, claimError(tenant, r.Err)
			}
			a := r.Val.(*Assignment)
			if h.hold(a) {
				return a, true, nil
			}
			// Unmapped between the claim and our hold (it died at once):
			// claim again, within this request's deadline.
		case <-ctx.Done():
			return nil, true, errs.Unavailable("no_container", 1, ctx.Err(), "No container could be had in time; retry shortly.")
		}
	}
}

func claimError(tenant string, err error) error {
	switch {
	case errors.Is(err, pool.ErrEmpty):
		return errs.Unavailable("no_container", 1, err, "No container is available to run this function right now; retry shortly.")
	case errors.Is(err, ErrCapacity):
		return errs.Unavailable("node_at_capacity", 2, err, "This node is at its container capacity; retry shortly.")
	case errors.Is(err, ErrClosed):
		return errs.Unavailable("shutting_down", 5, err, "This node is shutting down; retry shortly.")
	}
	return fmt.Errorf("claim container for %s: %w", tenant, err)
}

func (h *Handler) claim(tenant string) (*Assignment, error) {
	// A flight that finished just before this one started may have assigned one.
	if a := h.current(tenant, false); a != nil {
		return a, nil
	}
	if err := h.makeRoom(); err != nil {
		return nil, err
	}
	registered := false
	defer func() {
		if !registered {
			h.unreserve()
		}
	}()
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
	if h.cfg.Attach != nil {
		if err := h.cfg.Attach(tenant, c); err != nil {
			h.pool.Discard(ctx, c)
			return nil, fmt.Errorf("attach container: %w", err)
		}
	}
	a := &Assignment{Tenant: tenant, C: c, Since: time.Now(), lastUsed: time.Now(), provisioned: map[string]bool{}}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.remove(ctx, c)
		return nil, ErrClosed
	}
	h.byTenant[tenant] = a
	h.byID[c.ID] = a
	h.claiming-- // the reservation becomes the assignment, in one step
	registered = true
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
	// Outside the lock: a module downloaded on first need must not hold up
	// the tenant's other functions. Once on the node, this is a map lookup.
	links, err := h.links(fn)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.provisioned[k] {
		return nil
	}
	if err := writeFunction(a.C.AppDir, fn, links); err != nil {
		return fmt.Errorf("provision %s for %s: %w", k, a.Tenant, err)
	}
	a.provisioned[k] = true
	return nil
}

// links resolves fn's dependencies; a module not built yet, or failed,
// answers 503 with a message naming it.
func (h *Handler) links(fn *catalog.Function) (map[string]string, error) {
	if len(fn.Dependencies) == 0 {
		return nil, nil
	}
	if h.cfg.Modules == nil {
		return nil, errs.Unavailable("modules_unsupported", 0, nil, "This node cannot run functions with dependencies.")
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ColdStartTimeout)
	defer cancel()
	return h.cfg.Modules.Link(ctx, fn.Dependencies)
}

// Fail drops a's container after it failed a request (connection refused,
// reset, runner gone): the tenant's next request gets a fresh one.
func (h *Handler) Fail(a *Assignment, reason string) {
	if h.drop(a, ReasonFailed, true) {
		h.deaths.record(a.Tenant, time.Now())
		h.log.Warn("container dropped", "tenant", a.Tenant, "container", a.C.Name, "reason", reason)
	}
}

// Suspect checks a's container after a request timed out; a runner that does
// not answer its probe (a blocked event loop) or a container at its pids
// limit has its container replaced.
func (h *Handler) Suspect(a *Assignment) {
	if a.gone.Load() {
		return
	}
	h.bg.goTracked(func() { h.afterTimeout(a) })
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
	if h.drop(a, ReasonDied, true) {
		h.deaths.record(a.Tenant, time.Now())
		h.log.Warn("container died", "tenant", a.Tenant, "container", a.C.Name)
	}
	return true
}

// DropTenant removes a tenant's container (the tenant was deleted).
func (h *Handler) DropTenant(tenant string) {
	h.mu.Lock()
	a := h.byTenant[tenant]
	h.mu.Unlock()
	if a != nil && h.drop(a, ReasonTenant, true) {
		h.log.Info("container removed with its tenant", "tenant", tenant, "container", a.C.Name)
	}
	h.deaths.forget(tenant)
}

// drop unmaps a so no new request can hold it. Its container is removed now
// when broken (now) or nobody holds it, else when its last request releases.
// Only the first caller wins, so concurrent reports remove a container once.
func (h *Handler) drop(a *Assignment, reason string, now bool) bool {
	h.mu.Lock()
	if !a.gone.CompareAndSwap(false, true) {
		h.mu.Unlock()
		return false
	}
	h.unmapLocked(a)
	discard := (now || a.inflight == 0) && !a.discarded
	if discard {
		a.discarded = true
	}
	h.mu.Unlock()
	h.evictions[reason].Add(1)
	if discard {
		h.discardAsync(a)
	}
	return true
}

func (h *Handler) unmapLocked(a *Assignment) {
	if h.byTenant[a.Tenant] == a {
		delete(h.byTenant, a.Tenant)
	}
	delete(h.byID, a.C.ID)
}

func (h *Handler) discardAsync(a *Assignment) {
	h.bg.goTracked(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h.remove(ctx, a.C)
	})
}

// remove detaches a claimed container and removes it.
func (h *Handler) remove(ctx context.Context, c *pool.Container) {
	if h.cfg.Detach != nil {
		h.cfg.Detach(c)
	}
	h.pool.Discard(ctx, c)
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
		h.drop(a, ReasonShutdown, true)
	}
	h.bg.wait(ctx)
}
