// Package fastpath serves the webhook path (/run/..., /api/run/...) with a
// lean HTTP/1.1 connection loop in front of net/http.
//
// Why: on the warm path Wharf's own work is mostly net/http's per-request
// machinery, not Wharf's: a background-read goroutine started and stopped on
// every request (a goroutine, a wake-up of another thread and a handshake), a
// cancelable context, a chunk writer and header cloning. On a 2-core machine
// those wake-ups cost more latency than the proxying itself.
//
// What: each accepted connection is read here. As long as its requests are
// plain HTTP/1.1 requests for an eligible path (decided from the request line
// alone, before anything is consumed), this loop parses them with net/http's
// own parser (http.ReadRequest) and calls the same handler (echo, with every
// middleware) with a minimal ResponseWriter. The first request that is not
// eligible hands the connection, with the bytes already buffered, to the
// fallback http.Server for the rest of its life. So the management API,
// health, metrics, HTTP/1.0 and anything unusual keep net/http's behaviour
// exactly, and the fast path only ever sees the simple case.
package fastpath

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a fast path in front of Fallback.
type Server struct {
	Handler  http.Handler // the fast path's requests go here
	Fallback *http.Server // every other connection; its Handler is usually the same
	// Eligible tells from the request line whether the fast path may serve
	// it; the method is not checked: any token net/http accepts is fine.
	Eligible func(target []byte) bool
	// ReadHeaderTimeout bounds reading a request's head, IdleTimeout the wait
	// for the next request on a kept-alive connection (defaults: 10 s, 120 s).
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration

	mu       sync.Mutex
	conns    map[*conn]struct{}
	closing  bool
	handoff  *handoffListener
	inFlight atomic.Int64 // requests being served
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = http.ErrServerClosed

// Serve accepts connections on ln until Shutdown; the fallback server serves
// the connections handed to it.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.conns = map[*conn]struct{}{}
	s.handoff = newHandoffListener(ln.Addr())
	s.mu.Unlock()
	fallbackDone := make(chan error, 1)
	go func() { fallbackDone <- s.Fallback.Serve(s.handoff) }()

	var tempDelay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // EMFILE and friends: back off, as net/http does
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			_ = s.handoff.Close()
			return err
		}
		tempDelay = 0
		c := &conn{srv: s, nc: nc}
		if !s.track(c, true) {
			nc.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle fast-path connections, waits for
// requests under way (up to ctx), and shuts the fallback server down, which
// does the same for its own connections. The caller closes the listener
// given to Serve (as with http.Server, Shutdown closes it too).
func (s *Server) Shutdown(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	s.closing = true
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	err := s.Fallback.Shutdown(ctx)
	// A connection that was busy closes itself when its request ends (the
	// server is closing); poll for the requests under way, as net/http does.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		for c := range s.conns {
			c.closeIfIdle()
		}
		s.mu.Unlock()
		if s.inFlight.Load() == 0 {
			s.closeAll()
			return err
		}
		select {
		case <-ctx.Done():
			s.closeAll()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.nc.Close()
	}
}

func (s *Server) track(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing {
			return false
		}
		s.conns[c] = struct{}{}
		return true
	}
	delete(s.conns, c)
	return true
}

func (s *Server) readHeaderTimeout() time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return 10 * time.Second
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return 120 * time.Second
}

// EligibleRunPath accepts the webhook paths: /run/... and /api/run/....
func EligibleRunPath(target []byte) bool {
	return bytes.HasPrefix(target, []byte("/run/")) || bytes.HasPrefix(target, []byte("/api/run/"))
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}
