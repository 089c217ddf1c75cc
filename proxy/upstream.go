package proxy

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// upstreams keeps idle keep-alive connections to runners, keyed by container
// id rather than address: a bridge IP is reused by later containers, and a
// connection must never outlive the container it was opened to.
//
// It replaces http.Transport on the hot path. The Transport runs a reader and
// a writer goroutine per connection and hands every request and response
// between them over channels; an exchange here runs on the request's own
// goroutine (see forward.go), which halves the proxy's CPU per request.
type upstreams struct {
	dialTimeout time.Duration
	idleTimeout time.Duration // the runner has none: this is what closes idle connections
	maxIdle     int           // idle connections kept per container

	mu        sync.Mutex
	idle      map[string][]*upConn
	closed    bool
	lastSweep time.Time
}

type upConn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	key       string
	idleSince time.Time
	reused    bool // it served a request before: it may have been closed under us
}

func newUpstreams(dialTimeout, idleTimeout time.Duration, maxIdle int) *upstreams {
	return &upstreams{dialTimeout: dialTimeout, idleTimeout: idleTimeout, maxIdle: maxIdle, idle: map[string][]*upConn{},
		lastSweep: time.Now()}
}

// get returns an idle connection to the container key, or dials ip:port
// (giving up at deadline, if that comes before the dial timeout).
func (u *upstreams) get(ctx context.Context, key, ip, port string, deadline time.Time) (*upConn, error) {
	now := time.Now()
	var stale []*upConn
	u.mu.Lock()
	list := u.idle[key]
	var c *upConn
	for len(list) > 0 {
		last := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(last.idleSince) < u.idleTimeout {
			c = last
			break
		}
		stale = append(stale, last)
	}
	if len(list) == 0 {
		delete(u.idle, key)
	} else {
		u.idle[key] = list
	}
	u.mu.Unlock()
	for _, s := range stale {
		s.nc.Close()
	}
	if c != nil {
		c.reused = true
		return c, nil
	}
	d := net.Dialer{Timeout: u.dialTimeout, Deadline: deadline, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
	if err != nil {
		return nil, err
	}
	return &upConn{nc: nc, br: bufio.NewReaderSize(nc, 8<<10), bw: bufio.NewWriterSize(nc, 8<<10), key: key}, nil
}

// put returns a connection whose exchange ended cleanly.
func (u *upstreams) put(c *upConn) {
	now := time.Now()
	c.idleSince = now
	u.mu.Lock()
	due := now.Sub(u.lastSweep) > u.idleTimeout/2
	if u.closed || len(u.idle[c.key]) >= u.maxIdle {
		u.mu.Unlock()
		c.nc.Close()
	} else {
		u.idle[c.key] = append(u.idle[c.key], c)
		u.mu.Unlock()
	}
	if due {
		u.sweep(now)
	}
}

// forget closes the idle connections to a container (it is gone).
func (u *upstreams) forget(key string) {
	u.mu.Lock()
	list := u.idle[key]
	delete(u.idle, key)
	u.mu.Unlock()
	for _, c := range list {
		c.nc.Close()
	}
}

// sweep closes connections idle past the timeout, so containers that went
// away leave nothing behind. put runs it now and then: no goroutine to stop.
func (u *upstreams) sweep(now time.Time) {
	var stale []*upConn
	u.mu.Lock()
	u.lastSweep = now
	for key, list := range u.idle {
		kept := list[:0]
		for _, c := range list {
			if now.Sub(c.idleSince) < u.idleTimeout {
				kept = append(kept, c)
			} else {
				stale = append(stale, c)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(u.idle, key)
		} else {
			u.idle[key] = kept
		}
	}
	u.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
}

// close closes every idle connection; later puts close theirs.
func (u *upstreams) close() {
	u.mu.Lock()
	all := u.idle
	u.idle, u.closed = map[string][]*upConn{}, true
	u.mu.Unlock()
	for _, list := range all {
		for _, c := range list {
			c.nc.Close()
		}
	}
}

// idleCount is the number of idle connections kept (tests).
func (u *upstreams) idleCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, l := range u.idle {
		n += len(l)
	}
	return n
}
