// Package builder builds npm modules off the request path: it takes jobs
// from the queue in the store (modstore), runs `npm install name@version` in
// a throwaway, locked-down container of the runtime image, packs the
// resulting node_modules into a closure and stores it with its hash, size and
// npm's log. `wharf serve` runs one in process; `wharf builder` runs one alone.
// Any number of builders share one queue: leases decide who builds what.
package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/modstore"
	"github.com/wharfhq/wharf/npmspec"
)

// Defaults of Config.
const (
	DefaultRegistry    = "https://registry.npmjs.org/"
	DefaultTimeout     = 5 * time.Minute
	DefaultLease       = time.Minute
	DefaultMaxClosure  = 200 << 20
	DefaultMemory      = 1 << 30
	DefaultNanoCPUs    = 1_000_000_000
	DefaultPids        = 256
	DefaultTmpfs       = 512 << 20
	DefaultConcurrency = 1
	DefaultPoll        = 2 * time.Second
	maxLogBytes        = 64 << 10
)

// Config configures a Builder. Zero fields take the defaults.
type Config struct {
	// ID names this builder: the holder of its leases and the wharf.node
	// label of its build containers (a node's builder uses the node's id).
	ID string
	// Image is the runtime image tag (images.Ensure).
	Image string
	// WorkDir holds the builds' output directories; this builder owns it.
	WorkDir string
	// Registry is the npm registry URL.
	Registry string
	// Timeout bounds one npm install.
	Timeout time.Duration
	// Lease is how long a claim holds without renewal; it is renewed every
	// third of it, so a builder that dies loses its job after about Lease.
	Lease time.Duration
	// MaxClosure bounds the bytes of a module's unpacked closure.
	MaxClosure int64
	// Limits of a build container.
	Memory   int64
	NanoCPUs int64
	Pids     int64
	Tmpfs    int64
	// Concurrency is how many builds run at once.
	Concurrency int
	// Poll is how often the queue is scanned when nothing wakes the builder.
	Poll time.Duration
	// Network of build containers (buildnet's); "" is the engine's default
	// bridge, for tests only.
	Network string
	// Proxy is the URL of the proxy npm must reach the registry through
	// (buildnet's); "" connects directly.
	Proxy string
	// Runtime is the OCI runtime of build containers; "" is the engine default.
	Runtime string
}

func (c Config) withDefaults() Config {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Registry == "" {
		c.Registry = DefaultRegistry
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	def(&c.MaxClosure, DefaultMaxClosure)
	def(&c.Memory, DefaultMemory)
	def(&c.NanoCPUs, DefaultNanoCPUs)
	def(&c.Pids, DefaultPids)
	def(&c.Tmpfs, DefaultTmpfs)
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	return c
}

// Builder takes jobs from the queue and builds them.
type Builder struct {
	cfg  Config
	eng  engine.Engine
	q    *modstore.Store
	log  *slog.Logger
	wake chan struct{}

	mu       sync.Mutex
	inflight map[string]bool
	builds   int64 // npm runs started, for tests and logs
}

// New returns a builder; Run starts it.
func New(cfg Config, eng engine.Engine, q *modstore.Store, logger *slog.Logger) (*Builder, error) {
	cfg = cfg.withDefaults()
	if cfg.ID == "" || cfg.Image == "" || cfg.WorkDir == "" {
		return nil, errors.New("builder: ID, Image and WorkDir are required")
	}
	if err := ValidateRegistry(cfg.Registry); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("builder: work dir: %w", err)
	}
	return &Builder{cfg: cfg, eng: eng, q: q, log: logger.With("component", "builder"),
		wake: make(chan struct{}, 1), inflight: map[string]bool{}}, nil
}

// Wake makes the builder scan the queue now (a job was just enqueued here).
func (b *Builder) Wake() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Builds is the number of npm runs this builder started.
func (b *Builder) Builds() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.builds
}

// Run builds queued modules until ctx ends, then waits for the builds under
// way to stop (each is cancelled: its container removed, its lease released).
// It first removes what an earlier run of this builder id left behind.
func (b *Builder) Run(ctx context.Context) {
	b.sweep(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, b.cfg.Concurrency)
	done := make(chan struct{}, b.cfg.Concurrency)
	t := time.NewTicker(b.cfg.Poll)
	defer t.Stop()
	for {
		b.dispatch(ctx, &wg, slots, done)
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-t.C:
		case <-done:
		}
	}
}

// dispatch starts a worker for each queued job not handled here yet, while
// slots are free.
func (b *Builder) dispatch(ctx context.Context, wg *sync.WaitGroup, slots, done chan struct{}) {
	if len(slots) == cap(slots) {
		return
	}
	jobs, err := b.q.Pending(ctx, 100)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("reading the build queue failed", "err", err)
		}
		return
	}
	for _, j := range jobs {
		key := j.Ref.String()
		b.mu.Lock()
		busy := b.inflight[key]
		b.mu.Unlock()
		if busy {
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			return
		}
		b.mu.Lock()
		b.inflight[key] = true
		b.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				b.mu.Lock()
				delete(b.inflight, key)
				b.mu.Unlock()
				<-slots
				select {
				case done <- struct{}{}:
				default:
				}
			}()
			b.handle(ctx, j.Ref)
		}()
	}
}

// handle claims one job and sees it through, as far as this builder can.
func (b *Builder) handle(ctx context.Context, r npmspec.Ref) {
	log := b.log.With("module", r.String())
	if !r.Valid() { // the store is shared; never hand npm something unchecked
		log.Error("queued module has an invalid name or version; skipped")
		return
	}
	lease, err := b.q.Claim(ctx, r, b.cfg.ID, b.cfg.Lease)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("claim failed", "err", err)
		}
		return
	}
	if lease == nil {
		return // held by another builder, or a retry not due yet
	}
	log = log.With("attempt", lease.Attempt)
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewDone := make(chan struct{})
	go func() { defer close(renewDone); b.renew(bctx, lease, cancel, log) }()
	defer func() { cancel(nil); <-renewDone }()

	// Store writes outlive a shutdown, so a finished build is not lost; each
	// phase of writes gets its own deadline, taken when it starts.
	writes := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	}
	wctx, wcancel := writes()
	defer wcancel()

	if _, ok, err := b.q.Result(bctx, r); err != nil {
		log.Warn("reading the result failed", "err", err)
		return
	} else if ok {
		// The previous holder recorded a result and died before marking the job done.
		if err := b.q.Finalize(wctx, lease); err != nil {
			log.Warn("finalizing failed", "err", err)
		}
		return
	}
	if lease.GiveUp {
		// The round's last attempt died without finishing: close the round.
		msg := fmt.Sprintf("gave up after %d attempts: %s", b.q.MaxAttempts(), lease.Error)
		if err := b.q.GiveUp(wctx, lease, msg, lease.Log); err != nil {
			log.Warn("recording the failure failed", "err", err)
		}
		log.Warn("module failed; it is built again when asked for later", "err", msg)
		return
	}

	start := time.Now()
	out := b.build(bctx, r, log)
	defer out.cleanup()
	wctx, wcancel = writes()
	defer wcancel()
	if cause := context.Cause(bctx); cause != nil {
		if errors.Is(cause, modstore.ErrLeaseLost) {
			log.Warn("lease lost during the build; another builder has the job", "err", cause)
			return
		}
		// Shutting down: hand the job back at once rather than at expiry.
		if err := b.q.Release(wctx, lease, "the builder stopped during the build", out.log); err != nil {
			log.Warn("releasing the lease failed", "err", err)
		}
		return
	}
	dur := time.Since(start)
	switch {
	case out.fail != nil && out.fail.Permanent:
		if _, err := b.q.Complete(wctx, lease, modstore.Result{Status: modstore.StatusFailed, Error: out.fail.Message,
			Log: out.log, DurationMS: dur.Milliseconds()}); err != nil {
			log.Warn("recording the failure failed", "err", err)
			return
		}
		log.Warn("module failed", "err", out.fail.Message, "duration", dur.Round(time.Millisecond))
	case out.fail != nil && lease.LastInRound:
		msg := fmt.Sprintf("gave up after %d attempts: %s", b.q.MaxAttempts(), out.fail.Message)
		if err := b.q.GiveUp(wctx, lease, msg, out.log); err != nil {
			log.Warn("recording the failure failed", "err", err)
			return
		}
		log.Warn("module failed; it is built again when asked for later", "err", msg)
	case out.fail != nil:
		if err := b.q.Release(wctx, lease, out.fail.Message, out.log); err != nil {
			log.Warn("releasing the lease failed", "err", err)
		}
		log.Warn("build failed; it will be retried", "err", out.fail.Message)
	default:
		b.store(wctx, lease, out, dur, log)
	}
}

// store uploads a built closure and records the module ready.
func (b *Builder) store(ctx context.Context, lease *modstore.Lease, out *buildOutput, dur time.Duration, log *slog.Logger) {
	f, err := os.Open(out.archive)
	if err != nil {
		log.Error("opening the closure failed", "err", err)
		return
	}
	defer f.Close()
	fileID, size, sum, err := b.q.PutClosure(ctx, lease.Ref(), f, b.cfg.ID)
	if err != nil {
		// The lease expires and another attempt builds again.
		log.Warn("storing the closure failed", "err", err)
		return
	}
	res, err := b.q.Complete(ctx, lease, modstore.Result{
		Status: modstore.StatusReady, FileID: fileID, SHA256: sum, Size: size,
		UnpackedSize: out.stats.Unpacked, Files: out.stats.Files, Packages: out.stats.Packages, Peers: out.stats.Peers,
		Log: out.log, DurationMS: dur.Milliseconds(),
	})
	if err != nil {
		if derr := b.q.DeleteClosure(ctx, fileID); derr != nil {
			log.Warn("deleting an unrecorded closure failed", "err", derr)
		}
		log.Warn("recording the module failed", "err", err)
		return
	}
	log.Info("module built", "packages", out.stats.Packages, "files", out.stats.Files,
		"unpacked_bytes", out.stats.Unpacked, "stored_bytes", size, "duration", dur.Round(time.Millisecond),
		"sha256", res.SHA256)
}

// renew keeps the lease alive every third of its term until ctx ends; when
// another builder took the job over it cancels the build with ErrLeaseLost.
func (b *Builder) renew(ctx context.Context, l *modstore.Lease, cancel context.CancelCauseFunc, log *slog.Logger) {
	t := time.NewTicker(b.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := b.q.Renew(ctx, l, b.cfg.Lease)
		switch {
		case errors.Is(err, modstore.ErrLeaseLost):
			cancel(err)
			return
		case err != nil && ctx.Err() == nil:
			log.Warn("renewing the lease failed; retrying", "err", err)
		}
	}
}

// sweep removes the build containers and work directories an earlier run of
// this builder id left behind (killed mid-build).
func (b *Builder) sweep(ctx context.Context) {
	list, err := b.eng.ListContainers(ctx, map[string]string{engine.LabelNode: b.cfg.ID, engine.LabelRole: RoleBuild})
	if err != nil {
		b.log.Warn("listing leftover build containers failed", "err", err)
	}
	for _, c := range list {
		if err := b.eng.RemoveContainer(ctx, c.ID); err != nil {
			b.log.Warn("removing a leftover build container failed", "container", c.Name, "err", err)
		}
	}
	entries, err := os.ReadDir(b.cfg.WorkDir)
	if err != nil {
		b.log.Warn("reading the work dir failed", "err", err)
		return
	}
	for _, e := range entries {
		if err := os.RemoveAll(b.cfg.WorkDir + "/" + e.Name()); err != nil {
			b.log.Warn("removing a leftover build dir failed", "dir", e.Name(), "err", err)
		}
	}
}

func randHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}
