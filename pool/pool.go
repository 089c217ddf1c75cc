// Package pool keeps pre-warmed, hardened runtime containers ready so that a
// tenant's first request only has to claim one: creating, starting and waiting
// for the runner all happen before any tenant is known.
package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharfhq/wharf/engine"
)

// RolePool labels every container the pool creates. A container keeps it for
// life (Docker labels are immutable); the owner record says who claimed it.
const RolePool = "pool"

// ErrEmpty is returned by Take when no container became ready in time.
var ErrEmpty = errors.New("pool: no warm container available in time")

var nodeIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Config configures a Pool.
type Config struct {
	NodeID     string
	Image      string // image reference to run
	ImageHash  string // content hash of the image, recorded as a label
	Network    string // Wharf's isolated bridge
	Root       string // host directory holding one directory per container
	ModulesDir string // host module store, mounted read-only at /modules

	Size         int           // ready containers to keep at least (the minimum)
	MaxSize      int           // ready containers at most while demand is high; <= Size: fixed
	TTL          time.Duration // how long a claim counts as demand (default 2m)
	MaxWaiting   int           // cold starts queued for a container; beyond: ErrEmpty at once (0: 128)
	MaxParallel  int           // concurrent creations (default 2)
	ReadyTimeout time.Duration // creation to runner answering (default 20s)
	// RefillHold delays replacing a taken container while the pool is at
	// least half full, so the cold start that took it is not competing with
	// the replacement's creation for CPU (refillHold). 0: at once.
	RefillHold time.Duration
	Limits     Limits

	SeccompProfile string // JSON profile; "" keeps the engine's default
	Runtime        string // OCI runtime, "" for the default (runc)

	// Probe reports whether the runner at ip answers; default is an HTTP probe.
	Probe func(ctx context.Context, ip string) error
}

// Container is a running runtime container.
type Container struct {
	ID      string
	Name    string
	IP      string
	Dir     string // host directory of this container
	AppDir  string // host directory mounted read-only at /app
	Created time.Time
}

// Stats are counters for metrics and tests.
type Stats struct {
	Ready, Creating, Waiting int
	Target                   int
	Takes, Created, Failures int64
	Shrunk                   int64
	ConsecutiveFailures      int
}

// Pool keeps Config.Size containers ready.
type Pool struct {
	cfg Config
	eng engine.Engine
	log *slog.Logger

	mu        sync.Mutex
	ready     []*Container
	creating  int
	waiting   int
	avail     chan struct{} // closed and replaced whenever a container becomes ready
	failures  int           // consecutive creation failures, for backoff
	notBefore time.Time     // no creation starts before this (backoff)
	takeTimes []int64       // unix nanos of claims within the TTL: the demand

	kick chan struct{}
	wg   sync.WaitGroup

	takes, created, failed, shrunk atomic.Int64

	specHash string // of the spec this pool creates containers with
}

// New validates cfg and returns a pool; call Run to start filling it.
func New(cfg Config, eng engine.Engine, logger *slog.Logger) (*Pool, error) {
	if !nodeIDRe.MatchString(cfg.NodeID) {
		return nil, fmt.Errorf("pool: node id %q must match %s", cfg.NodeID, nodeIDRe)
	}
	if cfg.Image == "" || cfg.Network == "" || cfg.Root == "" || cfg.ModulesDir == "" {
		return nil, errors.New("pool: image, network, root and modules dir are required")
	}
	if cfg.Size < 0 {
		return nil, fmt.Errorf("pool: size %d must not be negative", cfg.Size)
	}
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = 2
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 20 * time.Second
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits
	}
	if cfg.Probe == nil {
		cfg.Probe = HTTPProbe
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 2 * time.Minute
	}
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = 128
	}
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	if err := os.MkdirAll(cfg.ModulesDir, 0o755); err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	return &Pool{
		cfg: cfg, eng: eng, log: logger.With("component", "pool"),
		avail: make(chan struct{}), kick: make(chan struct{}, 1),
		specHash: Spec(cfg, "x").Labels[LabelSpec],
	}, nil
}

// Config returns the effective configuration.
func (p *Pool) Config() Config { return p.cfg }

// Take claims one ready container. The claim is a single step under the
// pool's lock, so no two callers (and no reaper) can ever own the same one.
// It waits for a container until ctx ends, then returns ErrEmpty.
func (p *Pool) Take(ctx context.Context) (*Container, error) {
	for {
		p.mu.Lock()
		if n := len(p.ready); n > 0 {
			c := p.ready[0]
			p.ready[0] = nil
			p.ready = p.ready[1:]
			p.takeTimes = append(p.takeTimes, time.Now().UnixNano())
			p.mu.Unlock()
			p.takes.Add(1)
			p.refill()
			return c, nil
		}
		if p.waiting >= p.cfg.MaxWaiting {
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: %d cold starts already waiting", ErrEmpty, p.cfg.MaxWaiting)
		}
		p.waiting++
		avail := p.avail
		p.mu.Unlock()
		p.refill()

		select {
		case <-avail:
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
		case <-ctx.Done():
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: %w", ErrEmpty, ctx.Err())
		}
	}
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Ready: len(p.ready), Creating: p.creating, Waiting: p.waiting, Target: p.targetLocked(time.Now()),
		Takes: p.takes.Load(), Created: p.created.Load(), Failures: p.failed.Load(), Shrunk: p.shrunk.Load(),
		ConsecutiveFailures: p.failures,
	}
}

// targetLocked is the current target after forgetting demand older than the TTL.
func (p *Pool) targetLocked(now time.Time) int {
	p.takeTimes = pruneBefore(p.takeTimes, now.Add(-p.cfg.TTL).UnixNano())
	return target(p.cfg.Size, p.cfg.MaxSize, len(p.takeTimes))
}

// Ready is the number of containers ready to be taken.
func (p *Pool) Ready() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready)
}

func (p *Pool) refill() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run creates containers until ctx ends, then waits for creations under way.
// It does not remove ready containers: Drain does, so a restart can adopt them.
func (p *Pool) Run(ctx context.Context) {
	defer p.wg.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		p.mu.Lock()
		now := time.Now()
		tgt := p.targetLocked(now)
		n := 0
		var sinceTake time.Duration = 1<<63 - 1
		if k := len(p.takeTimes); k > 0 {
			sinceTake = now.Sub(time.Unix(0, p.takeTimes[k-1]))
		}
		hold := refillHold(len(p.ready), p.waiting, tgt, sinceTake, p.cfg.RefillHold)
		if hold == 0 && !now.Before(p.notBefore) {
			n = toCreate(len(p.ready), p.creating, p.waiting, tgt, p.cfg.MaxParallel)
			if p.failures > 0 && n > 1 {
				n = 1 // while failing, probe the engine with one creation at a time
			}
		}
		p.creating += n
		// Demand has aged out: give back the containers beyond the target.
		var surplus []*Container
		if k := excess(len(p.ready), tgt); k > 0 && p.waiting == 0 {
			surplus = append(surplus, p.ready[len(p.ready)-k:]...)
			p.ready = p.ready[:len(p.ready)-k]
		}
		p.mu.Unlock()
		for _, c := range surplus {
			p.shrunk.Add(1)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				p.discard(rctx, c)
			}()
		}
		for i := 0; i < n; i++ {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.createOne(ctx)
			}()
		}
		var held <-chan time.Time
		if hold > 0 {
			held = time.After(hold)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-tick.C:
		case <-held:
		}
	}
}

func (p *Pool) createOne(ctx context.Context) {
	start := time.Now()
	c, err := p.create(ctx)
	p.mu.Lock()
	p.creating--
	if err != nil {
		p.failures++
		backoff := min(100*time.Millisecond<<min(p.failures, 7), 10*time.Second)
		p.notBefore = time.Now().Add(backoff)
		p.mu.Unlock()
		p.failed.Add(1)
		if ctx.Err() == nil {
			p.log.Warn("container creation failed", "err", err, "retry_in", backoff)
		}
		p.refill()
		return
	}
	p.failures = 0
	p.notBefore = time.Time{}
	p.ready = append(p.ready, c)
	close(p.avail)
	p.avail = make(chan struct{})
	p.mu.Unlock()
	p.created.Add(1)
	p.log.Debug("container ready", "container", c.Name, "ip", c.IP, "took", time.Since(start))
	p.refill()
}

func (p *Pool) create(ctx context.Context) (*Container, error) {
	name := fmt.Sprintf("wharf-%s-%s", p.cfg.NodeID, randHex(5))
	c := &Container{Name: name, Dir: containerDir(p.cfg.Root, name), AppDir: hostAppDir(p.cfg.Root, name)}
	if err := os.MkdirAll(c.AppDir, 0o755); err != nil {
		return nil, fmt.Errorf("container dir: %w", err)
	}
	// The container's files are readable by the runner's user through the
	// read-only mount; the node keeps the parent directories private.
	if err := os.Chmod(c.AppDir, 0o755); err != nil {
		return nil, fmt.Errorf("container dir: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ReadyTimeout)
	defer cancel()
	fail := func(err error) (*Container, error) {
		// Cleanup must run even when ctx is what failed.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer rcancel()
		p.discard(rctx, c)
		return nil, err
	}
	id, err := p.eng.CreateContainer(ctx, Spec(p.cfg, name))
	if err != nil {
		return fail(err)
	}
	c.ID = id
	if err := p.eng.StartContainer(ctx, id); err != nil {
		return fail(err)
	}
	info, err := p.eng.InspectContainer(ctx, id)
	if err != nil {
		return fail(err)
	}
	if info.IP == "" {
		return fail(fmt.Errorf("container %s has no address on network %s", name, p.cfg.Network))
	}
	c.IP, c.Created = info.IP, time.Now()
	if err := waitReady(ctx, p.cfg.Probe, c.IP); err != nil {
		return fail(fmt.Errorf("runner in %s never became ready: %w", name, err))
	}
	return c, nil
}

// Forget drops a pooled container that died; it reports whether it was pooled.
func (p *Pool) Forget(ctx context.Context, id string) bool {
	p.mu.Lock()
	var found *Container
	for i, c := range p.ready {
		if c.ID == id {
			found = c
			p.ready = append(p.ready[:i], p.ready[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	if found == nil {
		return false
	}
	p.log.Warn("pooled container died", "container", found.Name)
	p.discard(ctx, found)
	p.refill()
	return true
}

// Drain removes every ready container (shutdown).
func (p *Pool) Drain(ctx context.Context) {
	p.mu.Lock()
	ready := p.ready
	p.ready = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range ready {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.discard(ctx, c)
		}()
	}
	wg.Wait()
}

// Discard removes a container and its host directory. A container that served
// a tenant is always discarded, never returned to the pool.
func (p *Pool) Discard(ctx context.Context, c *Container) { p.discard(ctx, c) }

func (p *Pool) discard(ctx context.Context, c *Container) {
	// Without an id (the create call failed or was cancelled) the engine may
	// still have created it: remove by name, which Docker accepts too.
	ref := c.ID
	if ref == "" {
		ref = c.Name
	}
	if ref != "" {
		if err := p.eng.RemoveContainer(ctx, ref); err != nil {
			p.log.Warn("remove container", "container", c.Name, "err", err)
		}
	}
	if c.Dir != "" {
		if err := os.RemoveAll(c.Dir); err != nil {
			p.log.Warn("remove container dir", "dir", c.Dir, "err", err)
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
