package tenantlog

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/store"
)

// Store is the part of *store.Store the service uses.
type Store interface {
	GetTenant(ctx context.Context, name string) (store.Tenant, error)
	AppendLogs(ctx context.Context, c store.LogChunk) error
	RecentLogs(ctx context.Context, q store.LogQuery) ([]store.LogLine, error)
	LogChunksSince(ctx context.Context, tenant, uid string, since time.Time, exceptNode string) ([]store.LogChunk, error)
	TrimLogs(ctx context.Context, tenant string, lim store.LogLimits) (int, error)
	ExpireLogs(ctx context.Context, before time.Time) (int, error)
}

var _ Store = (*store.Store)(nil)

// Engine is what the service needs from the container engine: a
// container's output, and whether it still runs when that output ends.
type Engine interface {
	FollowLogs(ctx context.Context, id string, since time.Time, stdout, stderr io.Writer) error
	InspectContainer(ctx context.Context, id string) (engine.ContainerInfo, error)
}

// Config configures a Service. Zero fields take the defaults.
type Config struct {
	NodeID string
	// Rate is how many lines a second one tenant may write on this node,
	// bursts of twice that; the rest is dropped and counted in a notice.
	Rate int
	// HistoryLines, HistoryBytes and HistoryChunks bound each tenant's
	// history in the store; HistoryLines < 0 keeps no history at all.
	HistoryLines  int
	HistoryBytes  int
	HistoryChunks int
	// HistoryAge: older chunks are deleted.
	HistoryAge time.Duration
	// FlushInterval is how often buffered lines go to the store.
	FlushInterval time.Duration
	// PeerPoll is how often a live stream looks in the store for the output
	// of the tenant's containers on other nodes.
	PeerPoll time.Duration
	// Clock is the time source; default time.Now.
	Clock func() time.Time
	// FollowDelay is how long after Follow a container's output is first
	// read (and its tenant looked up in the store). The output waits in the
	// engine's log file meanwhile, read from `since` on, so nothing is lost;
	// the tenant's first request, which runs right after the claim, does not
	// share the CPU with the engine's log stream and the store lookup.
	FollowDelay time.Duration
}

// Defaults of Config.
const (
	DefaultRate          = 100
	DefaultHistoryLines  = 1000
	DefaultHistoryBytes  = 1 << 20
	DefaultHistoryChunks = 200
	DefaultHistoryAge    = 7 * 24 * time.Hour
	DefaultFlushInterval = time.Second
	DefaultPeerPoll      = 2 * time.Second

	// A tenant's buffer is flushed early once it holds this much.
	maxChunkLines = 500
	maxChunkBytes = 256 << 10
	// peerWindow is how far back a stream looks for peers' chunks, covering
	// their flush interval and clock skew between nodes.
	peerWindow     = 30 * time.Second
	expireInterval = 10 * time.Minute
	storeTimeout   = 10 * time.Second
	// trimEvery: a tenant's history is trimmed after this share of its
	// limit was written, or after trimAfter.
	trimAfter = time.Minute
	// idleAfter: per-tenant state unused this long is forgotten.
	idleAfter = 2 * time.Minute
)

func (c Config) withDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.HistoryLines == 0 {
		c.HistoryLines = DefaultHistoryLines
	}
	if c.HistoryBytes <= 0 {
		c.HistoryBytes = DefaultHistoryBytes
	}
	if c.HistoryChunks <= 0 {
		c.HistoryChunks = DefaultHistoryChunks
	}
	if c.HistoryAge <= 0 {
		c.HistoryAge = DefaultHistoryAge
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.PeerPoll <= 0 {
		c.PeerPoll = DefaultPeerPoll
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

func (c Config) keepsHistory() bool { return c.HistoryLines > 0 }

// tenantKey names one incarnation of a tenant: a tenant deleted and created
// again under its name never sees the old one's lines.
type tenantKey struct{ tenant, uid string }

// tenantState is a tenant's rate limit and its lines not yet in the store.
type tenantState struct {
	bucket   *bucket
	dropped  int // rate-limited since the last notice
	lines    []store.LogLine
	bytes    int
	lastSeen time.Time
	// flushing are lines on their way to the store: still part of the
	// history until the write returned.
	flushing []store.LogLine
}

// Service follows containers' output and serves it.
type Service struct {
	cfg Config
	st  Store
	eng Engine
	log *slog.Logger
	hub *hub

	mu      sync.Mutex
	tenants map[tenantKey]*tenantState
	closed  bool

	kick   chan struct{} // a buffer is full: flush now
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // followers and peer pollers
	loop   sync.WaitGroup // the flusher

	trims map[string]trimState // flusher goroutine only
}

type trimState struct {
	lines int
	last  time.Time
}

// New starts a service; Close stops it.
func New(cfg Config, st Store, eng Engine, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg.withDefaults(), st: st, eng: eng, log: logger.With("component", "tenantlog"), hub: newHub(),
		tenants: map[tenantKey]*tenantState{}, kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		trims: map[string]trimState{}}
	s.loop.Add(1)
	go s.run()
	return s
}

func (s *Service) now() time.Time { return s.cfg.Clock() }

// Follow streams the output of a tenant's container, from since on, until
// the container is gone or the service closes. The container must serve
// that tenant alone: every line it writes is attributed to the tenant.
func (s *Service) Follow(tenant, containerID string, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go s.follow(tenant, containerID, since)
}

func (s *Service) follow(tenant, id string, since time.Time) {
	defer s.wg.Done()
	if d := s.cfg.FollowDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
	log := s.log.With("tenant", tenant, "container", short(id))
	uid, ok := s.resolve(tenant, log)
	if !ok {
		return
	}
	k := tenantKey{tenant, uid}
	var last time.Time
	out := newLineWriter(MaxRawLine, func(b []byte) { last = s.now(); s.publish(k, ParseStdout(b, last)) })
	errw := newLineWriter(MaxRawLine, func(b []byte) {
		last = s.now()
		if !IsRunnerStart(b) {
			s.publish(k, ParseStderr(b, last))
		}
	})
	log.Debug("following container output", "since", since)
	defer log.Debug("container output followed to its end")
	backoff := 100 * time.Millisecond
	for {
		err := s.eng.FollowLogs(s.ctx, id, since, out, errw)
		out.Flush()
		errw.Flush()
		if s.ctx.Err() != nil || isNotFound(err) || (err == nil && !s.running(id)) {
			return
		}
		// The stream ended or broke while the container runs: pick it up
		// again from the last line received (a line at the break may repeat).
		log.Warn("container output stream ended early; following again", "err", err)
		if !last.IsZero() {
			since = last
		}
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// running tells whether a container still runs (when in doubt, it does:
// following again costs little, losing its output does not).
func (s *Service) running(id string) bool {
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	info, err := s.eng.InspectContainer(ctx, id)
	if isNotFound(err) {
		return false
	}
	return err != nil || info.Running
}

// resolve finds the tenant incarnation a container serves, retrying while
// the store is unreachable; false when the tenant is gone or the service closes.
func (s *Service) resolve(tenant string, log *slog.Logger) (string, bool) {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
		t, err := s.st.GetTenant(ctx, tenant)
		cancel()
		switch {
		case err == nil:
			return t.UID, true
		case errors.Is(err, store.ErrNotFound):
			log.Info("tenant gone; its container's output is not followed")
			return "", false
		}
		log.Warn("cannot resolve the tenant of a container yet", "err", err)
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return "", false
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// publish rate-limits a line of a tenant, then streams and buffers it.
func (s *Service) publish(k tenantKey, l store.LogLine) {
	now := s.now()
	s.mu.Lock()
	st := s.state(k, now)
	if !st.bucket.take(now) {
		st.dropped++
		s.mu.Unlock()
		return
	}
	full := s.buffer(st, l)
	s.mu.Unlock()
	if full {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.hub.publish(k.tenant, k.uid, l)
}

// state returns a tenant's state, creating it; s.mu is held.
func (s *Service) state(k tenantKey, now time.Time) *tenantState {
	st := s.tenants[k]
	if st == nil {
		st = &tenantState{bucket: newBucket(float64(s.cfg.Rate), float64(2*s.cfg.Rate), now)}
		s.tenants[k] = st
	}
	st.lastSeen = now
	return st
}

// buffer keeps a line for the store and tells whether the buffer should be
// flushed now; s.mu is held. While the store is unreachable a buffer keeps
// the newest HistoryLines lines only.
func (s *Service) buffer(st *tenantState, l store.LogLine) bool {
	if !s.cfg.keepsHistory() {
		return false
	}
	st.lines = append(st.lines, l)
	st.bytes += len(l.Message)
	if over := len(st.lines) - s.cfg.HistoryLines; over > 0 {
		for _, old := range st.lines[:over] {
			st.bytes -= len(old.Message)
		}
		st.lines = slices.Delete(st.lines, 0, over)
	}
	return len(st.lines) >= maxChunkLines || st.bytes >= maxChunkBytes
}

// Subscribe opens a live view of a tenant's output (of one function when
// function is not ""): lines of this node's container at once, those of
// other nodes' containers as they reach the store. store.ErrNotFound when
// there is no such tenant.
func (s *Service) Subscribe(ctx context.Context, tenant, function string) (*Subscription, error) {
	t, err := s.st.GetTenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(s.ctx)
	sub := s.hub.subscribe(tenant, t.UID, function, cancel)
	if s.cfg.keepsHistory() {
		s.mu.Lock()
		if !s.closed {
			s.wg.Add(1)
			go s.pollPeers(pctx, sub)
		}
		s.mu.Unlock()
	}
	return sub, nil
}

// pollPeers delivers the chunks other nodes flush for sub's tenant. Chunks
// already stored when the stream opened belong to the history the caller
// reads, so they are only remembered.
func (s *Service) pollPeers(ctx context.Context, sub *Subscription) {
	defer s.wg.Done()
	seen := map[string]time.Time{}
	poll := func(deliver bool) {
		qctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		now := s.now()
		chunks, err := s.st.LogChunksSince(qctx, sub.tenant, sub.uid, now.Add(-peerWindow), s.cfg.NodeID)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Debug("poll peers' logs", "tenant", sub.tenant, "err", err)
			}
			return
		}
		for _, c := range chunks {
			if _, ok := seen[c.ID]; ok {
				continue
			}
			seen[c.ID] = c.At
			if deliver {
				for _, l := range c.Lines {
					sub.deliver(l)
				}
			}
		}
		for id, at := range seen {
			if now.Sub(at) > 2*peerWindow {
				delete(seen, id)
			}
		}
	}
	poll(false)
	t := time.NewTicker(s.cfg.PeerPoll)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			poll(true)
		case <-ctx.Done():
			return
		case <-sub.Done():
			return
		}
	}
}

// Recent returns the newest n lines of a tenant (of one function when
// function is not ""), oldest first: the store's history plus what this node
// has not flushed yet. store.ErrNotFound when there is no such tenant.
func (s *Service) Recent(ctx context.Context, tenant, function string, n int) ([]store.LogLine, error) {
	t, err := s.st.GetTenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return []store.LogLine{}, nil
	}
	// This node's lines not stored yet are read first: one being written
	// meanwhile is then found in the store too, and counted once.
	var local []store.LogLine
	s.mu.Lock()
	if st := s.tenants[tenantKey{tenant, t.UID}]; st != nil {
		for _, l := range slices.Concat(st.flushing, st.lines) {
			if store.LogLineMatches(l, function) {
				local = append(local, storedForm(l))
			}
		}
	}
	s.mu.Unlock()
	var lines []store.LogLine
	if s.cfg.keepsHistory() {
		lines, err = s.st.RecentLogs(ctx, store.LogQuery{Tenant: tenant, TenantUID: t.UID, Function: function, Limit: n})
		if err != nil {
			return nil, err
		}
	}
	stored := map[store.LogLine]int{}
	for _, l := range lines {
		stored[l]++
	}
	for _, l := range local {
		if stored[l] > 0 {
			stored[l]--
			continue
		}
		lines = append(lines, l)
	}
	slices.SortStableFunc(lines, func(a, b store.LogLine) int { return a.Time.Compare(b.Time) })
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if lines == nil {
		lines = []store.LogLine{}
	}
	return lines, nil
}

// run flushes buffers on a timer or when one fills up, and expires old history.
func (s *Service) run() {
	defer s.loop.Done()
	flush := time.NewTicker(s.cfg.FlushInterval)
	defer flush.Stop()
	expire := time.NewTicker(expireInterval)
	defer expire.Stop()
	s.expire()
	for {
		select {
		case <-flush.C:
			s.flush(s.ctx)
		case <-s.kick:
			s.flush(s.ctx)
		case <-expire.C:
			s.expire()
		case <-s.ctx.Done():
			return
		}
	}
}

type pendingChunk struct {
	k     tenantKey
	lines []store.LogLine
}

// flush writes every tenant's buffered lines to the store as one chunk each,
// and emits a notice for the lines the rate limit dropped. Only the flusher
// goroutine (or Close, after it stopped) calls it.
func (s *Service) flush(ctx context.Context) {
	now := s.now()
	var chunks []pendingChunk
	type notice struct {
		k tenantKey
		l store.LogLine
	}
	var notices []notice
	s.mu.Lock()
	for k, st := range s.tenants {
		if st.dropped > 0 {
			l := rateNotice(st.dropped, s.cfg.Rate, s.cfg.NodeID, now)
			st.dropped = 0
			s.buffer(st, l)
			notices = append(notices, notice{k, l})
		}
		if len(st.lines) > 0 {
			chunks = append(chunks, pendingChunk{k: k, lines: st.lines})
			st.flushing = append(st.flushing, st.lines...)
			st.lines, st.bytes = nil, 0
		} else if len(st.flushing) == 0 && now.Sub(st.lastSeen) > idleAfter {
			delete(s.tenants, k)
		}
	}
	s.mu.Unlock()
	for _, n := range notices {
		s.hub.publish(n.k.tenant, n.k.uid, n.l)
	}
	slices.SortFunc(chunks, func(a, b pendingChunk) int { return cmp.Compare(a.k.tenant, b.k.tenant) })
	for _, c := range chunks {
		s.store(ctx, c, now)
		s.mu.Lock()
		if st := s.tenants[c.k]; st != nil {
			st.flushing = st.flushing[min(len(c.lines), len(st.flushing)):]
		}
		s.mu.Unlock()
	}
}

// storedForm is a line as the store gives it back (UTC, milliseconds).
func storedForm(l store.LogLine) store.LogLine {
	l.Time = l.Time.UTC().Truncate(time.Millisecond)
	return l
}

func rateNotice(dropped, rate int, node string, now time.Time) store.LogLine {
	return store.LogLine{Time: now, Level: LevelSystem, Message: pluralLines(dropped) +
		" dropped on node " + node + ": more than " + itoa(rate) + " lines per second."}
}

// store writes one chunk and trims the tenant's history when due. A chunk
// that cannot be written is lost to the history (live streams had it).
func (s *Service) store(ctx context.Context, c pendingChunk, now time.Time) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	err := s.st.AppendLogs(wctx, store.LogChunk{Tenant: c.k.tenant, TenantUID: c.k.uid, Node: s.cfg.NodeID, At: now, Lines: c.lines})
	if err != nil {
		s.log.Warn("log lines not stored", "tenant", c.k.tenant, "lines", len(c.lines), "err", err)
		return
	}
	tr := s.trims[c.k.tenant]
	tr.lines += len(c.lines)
	if tr.lines < s.cfg.HistoryLines/4 && now.Sub(tr.last) < trimAfter {
		s.trims[c.k.tenant] = tr
		return
	}
	if _, err := s.st.TrimLogs(wctx, c.k.tenant, store.LogLimits{
		Lines: s.cfg.HistoryLines, Bytes: s.cfg.HistoryBytes, Chunks: s.cfg.HistoryChunks,
	}); err != nil {
		s.log.Warn("trim log history", "tenant", c.k.tenant, "err", err)
	}
	s.trims[c.k.tenant] = trimState{last: now}
	for t, tr := range s.trims { // forget tenants not heard of for a while
		if now.Sub(tr.last) > 10*trimAfter {
			delete(s.trims, t)
		}
	}
}

func (s *Service) expire() {
	if !s.cfg.keepsHistory() {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	if n, err := s.st.ExpireLogs(ctx, s.now().Add(-s.cfg.HistoryAge)); err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("expire log history", "err", err)
		}
	} else if n > 0 {
		s.log.Info("expired log history", "chunks", n)
	}
}

// CloseStreams ends every live stream (their Done closes) and refuses new
// ones: a node that shuts down must not wait for clients that never leave.
func (s *Service) CloseStreams() { s.hub.closeAll() }

// Close stops following containers, ends every stream and flushes what is
// buffered. ctx bounds the wait.
func (s *Service) Close(ctx context.Context) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.hub.closeAll()
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.loop.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("log followers still running at shutdown")
		return
	}
	s.flush(ctx)
}

// Subscribers is the number of open live streams.
func (s *Service) Subscribers() int { return s.hub.subscribers() }

func isNotFound(err error) bool { return errors.Is(err, errNotFound) }

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// errNotFound is the engine's: a container that is gone has no more output.
var errNotFound = engine.ErrNotFound

func pluralLines(n int) string {
	if n == 1 {
		return "1 log line"
	}
	return strconv.Itoa(n) + " log lines"
}

func itoa(n int) string { return strconv.Itoa(n) }
