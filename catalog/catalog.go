// Package catalog caches, on the node, what the request path needs to know
// about functions, so a warm request never reads the store.
package catalog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/wharfhq/wharf/store"
)

// Function is the current version of a function as the request path needs it.
type Function struct {
	Tenant       string
	Name         string
	Version      int
	Code         string // what the runner runs: the compiled form when there is one
	Dependencies map[string]string
	Secrets      map[string]string
	TimeoutMS    int
	// Body limits of the function's requests and responses; 0: the node's.
	MaxRequestBytes  int64
	MaxResponseBytes int64
}

// Source is where functions come from (the store).
type Source interface {
	GetFunction(ctx context.Context, tenant, name string) (store.FunctionVersion, error)
}

// maxMissing bounds remembered misses, so a flood of random names cannot
// grow the cache without limit.
const maxMissing = 100_000

// loadTimeout bounds one read of the store on a miss.
const loadTimeout = 10 * time.Second

type entry struct {
	fn     *Function // nil: known not to exist
	loaded time.Time
}

// Catalog is a read-through cache of current function versions, invalidated
// explicitly when a function changes.
type Catalog struct {
	src Source
	log *slog.Logger

	mu      sync.RWMutex
	entries map[string]entry
	missing int
	gen     map[string]uint64 // per key; bumped by Invalidate
	tgen    map[string]uint64 // per tenant; bumped by InvalidateTenant
	sf      singleflight.Group
}

// New returns an empty catalog reading from src.
func New(src Source, logger *slog.Logger) *Catalog {
	return &Catalog{src: src, log: logger, entries: map[string]entry{},
		gen: map[string]uint64{}, tgen: map[string]uint64{}}
}

func key(tenant, name string) string { return tenant + "/" + name }

// ErrNotFound is returned (wrapped) when the function does not exist.
var ErrNotFound = store.ErrNotFound

// Get returns the current version of tenant's function name.
func (c *Catalog) Get(ctx context.Context, tenant, name string) (*Function, error) {
	k := key(tenant, name)
	if fn, ok, err := c.cached(k); ok {
		return fn, err
	}
	ch := c.sf.DoChan(k, func() (any, error) {
		// A caller that missed just before another's load stored its result
		// starts a new flight after it: the cache answers it, not the store.
		if fn, ok, err := c.cached(k); ok {
			return fn, err
		}
		return c.load(tenant, name)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Function), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cached is what the cache knows of k: ok is false on a miss.
func (c *Catalog) cached(k string) (fn *Function, ok bool, err error) {
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok {
		return nil, false, nil
	}
	if e.fn == nil {
		return nil, true, fmt.Errorf("function %s: %w", k, ErrNotFound)
	}
	return e.fn, true, nil
}

func (c *Catalog) load(tenant, name string) (*Function, error) {
	k := key(tenant, name)
	c.mu.RLock()
	g, tg := c.gen[k], c.tgen[tenant]
	c.mu.RUnlock()
	// Detached: one slow caller giving up must not fail the others sharing the load.
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	v, err := c.src.GetFunction(ctx, tenant, name)
	var fn *Function
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("load function %s: %w", k, err)
	default:
		fn = &Function{Tenant: v.Tenant, Name: v.Name, Version: v.Version, Code: cmp.Or(v.Compiled, v.Code),
			Dependencies: v.Dependencies, Secrets: v.Secrets, TimeoutMS: v.TimeoutMS,
			MaxRequestBytes: v.MaxRequestBytes, MaxResponseBytes: v.MaxResponseBytes}
		if fn.Secrets == nil {
			fn.Secrets = map[string]string{}
		}
	}
	c.mu.Lock()
	// Cache only if nothing invalidated the key while we read: otherwise the
	// value may predate the change, and the next Get must read again.
	if c.gen[k] == g && c.tgen[tenant] == tg {
		if fn == nil {
			if c.missing >= maxMissing {
				c.dropMissingLocked()
			}
			c.missing++
		}
		c.entries[k] = entry{fn: fn, loaded: time.Now()}
	}
	c.mu.Unlock()
	if fn == nil {
		return nil, fmt.Errorf("function %s: %w", k, ErrNotFound)
	}
	return fn, nil
}

func (c *Catalog) dropMissingLocked() {
	for k, e := range c.entries {
		if e.fn == nil {
			delete(c.entries, k)
		}
	}
	c.missing = 0
}

// Invalidate forgets what is known about one function.
func (c *Catalog) Invalidate(tenant, name string) {
	k := key(tenant, name)
	c.mu.Lock()
	c.gen[k]++
	if e, ok := c.entries[k]; ok {
		if e.fn == nil {
			c.missing--
		}
		delete(c.entries, k)
	}
	c.mu.Unlock()
}

// InvalidateTenant forgets everything known about a tenant's functions.
func (c *Catalog) InvalidateTenant(tenant string) {
	prefix := tenant + "/"
	c.mu.Lock()
	c.tgen[tenant]++
	for k, e := range c.entries {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			if e.fn == nil {
				c.missing--
			}
			delete(c.entries, k)
		}
	}
	c.mu.Unlock()
}

// Prefetch loads a function into the cache in the background (after a deploy,
// so that the function's first request does not wait for the store).
func (c *Catalog) Prefetch(tenant, name string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
		defer cancel()
		if _, err := c.Get(ctx, tenant, name); err != nil && !errors.Is(err, ErrNotFound) {
			c.log.Debug("prefetch failed", "tenant", tenant, "function", name, "err", err)
		}
	}()
}

// Refresh forgets a function and, if this node had it cached, loads it again
// in the background: a change made through another node reaches this one
// without its next request waiting for the store.
func (c *Catalog) Refresh(tenant, name string) {
	c.mu.RLock()
	_, cached := c.entries[key(tenant, name)]
	c.mu.RUnlock()
	c.Invalidate(tenant, name)
	if cached {
		c.Prefetch(tenant, name)
	}
}

// InvalidateAll forgets everything (the change feed had a gap).
func (c *Catalog) InvalidateAll() {
	c.mu.Lock()
	for k := range c.entries {
		c.gen[k]++
		delete(c.entries, k)
	}
	for t := range c.tgen {
		c.tgen[t]++
	}
	c.missing = 0
	c.mu.Unlock()
}

// RevalidateOlderThan reloads, in the background, cached functions loaded
// more than age ago: a backstop for a change whose feed entry was lost (a
// node crashed between the write and recording the change).
func (c *Catalog) RevalidateOlderThan(age time.Duration) int {
	cutoff := time.Now().Add(-age)
	var stale [][2]string
	c.mu.RLock()
	for k, e := range c.entries {
		if e.loaded.Before(cutoff) {
			if i := strings.IndexByte(k, '/'); i > 0 {
				stale = append(stale, [2]string{k[:i], k[i+1:]})
			}
		}
	}
	c.mu.RUnlock()
	for _, tn := range stale {
		c.Refresh(tn[0], tn[1])
	}
	return len(stale)
}
