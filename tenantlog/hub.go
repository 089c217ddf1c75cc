package tenantlog

import (
	"fmt"
	"sync"

	"github.com/wharfhq/wharf/store"
)

// subscriberBuffer is how many lines a live stream may lag behind before
// lines for it are dropped (and counted) rather than slow everyone down.
const subscriberBuffer = 512

// Subscription is one live view of a tenant's output (optionally of one
// function). Lines arrive on Lines; Done is closed when the node stops
// streaming (shutdown). Close releases it.
type Subscription struct {
	tenant, uid, function string

	c    chan store.LogLine
	done chan struct{}

	mu      sync.Mutex // guards dropped and closed
	dropped int        // lines not delivered because c was full
	closed  bool

	stop    func() // removes it from the hub
	stopped sync.Once
}

// Lines delivers the subscription's lines.
func (s *Subscription) Lines() <-chan store.LogLine { return s.c }

// Done is closed when the node ends every stream (it is shutting down).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() { s.stopped.Do(s.stop) }

// deliver hands l to the subscriber without ever blocking: when its buffer is
// full the line is counted, and a notice saying how many were lost goes out
// before the next line that fits.
func (s *Subscription) deliver(l store.LogLine) {
	if !store.LogLineMatches(l, s.function) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.dropped > 0 {
		notice := store.LogLine{Time: l.Time, Level: LevelSystem,
			Message: fmt.Sprintf("%d log line(s) not shown: this stream could not keep up.", s.dropped)}
		select {
		case s.c <- notice:
			s.dropped = 0
		default:
			s.dropped++
			return
		}
	}
	select {
	case s.c <- l:
	default:
		s.dropped++
	}
}

// hub fans lines out to the subscriptions of their tenant.
type hub struct {
	mu     sync.Mutex
	subs   map[string]map[*Subscription]struct{} // tenant -> subscriptions
	closed bool
}

func newHub() *hub { return &hub{subs: map[string]map[*Subscription]struct{}{}} }

// subscribe registers a subscription; extraStop runs when it is closed.
func (h *hub) subscribe(tenant, uid, function string, extraStop func()) *Subscription {
	s := &Subscription{tenant: tenant, uid: uid, function: function,
		c: make(chan store.LogLine, subscriberBuffer), done: make(chan struct{})}
	s.stop = func() {
		h.mu.Lock()
		delete(h.subs[tenant], s)
		if len(h.subs[tenant]) == 0 {
			delete(h.subs, tenant)
		}
		h.mu.Unlock()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		if extraStop != nil {
			extraStop()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(s.done)
		return s
	}
	if h.subs[tenant] == nil {
		h.subs[tenant] = map[*Subscription]struct{}{}
	}
	h.subs[tenant][s] = struct{}{}
	return s
}

// publish delivers l to the tenant incarnation's subscriptions.
func (h *hub) publish(tenant, uid string, l store.LogLine) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[tenant] {
		if s.uid == uid {
			s.deliver(l)
		}
	}
}

// closeAll ends every stream (Done) and refuses new ones.
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for _, subs := range h.subs {
		for s := range subs {
			close(s.done)
		}
	}
}

// subscribers is the number of live subscriptions (tests, metrics).
func (h *hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, subs := range h.subs {
		n += len(subs)
	}
	return n
}
