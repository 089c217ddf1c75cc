// Package wtstorage is the channel through which a tenant's container reaches
// its functions' webtask storage (ctx.storage): a unix socket the node serves
// in each tenant container's host app directory, which the container sees as
// /app/storage.sock (its read-only /app bind mount; connect() needs no write
// access to the mount). The socket is created when a tenant claims the
// container and serves only that tenant, so the tenant is known by
// construction and can never be named by the code; no other container mounts
// that directory. The function is named in each request: a tenant's functions
// share one process, so anything one of them can reach its siblings can too,
// and the tenant is the boundary. The name must be one of the tenant's live
// functions (the node's catalog).
package wtstorage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/store"
)

// SocketName is the socket's name in a container's app directory.
const SocketName = "storage.sock"

// maxConns bounds the connections one container holds open on its socket
// (the runner keeps at most 8).
const maxConns = 16

// Backend keeps the documents (store.Store).
type Backend interface {
	GetStorage(ctx context.Context, tenant, fn string) (store.Storage, error)
	SetStorage(ctx context.Context, tenant, fn string, w store.StorageWrite) (store.Storage, error)
}

// Functions says whether a tenant's function exists (catalog.Catalog).
type Functions interface {
	Get(ctx context.Context, tenant, name string) (*catalog.Function, error)
}

// Server serves the storage sockets of a node's tenant containers.
type Server struct {
	backend Backend
	fns     Functions
	log     *slog.Logger

	mu     sync.Mutex
	open   map[string]*channel // by app directory
	closed bool
}

type channel struct {
	tenant string
	path   string
	srv    *http.Server
	done   chan struct{}
}

// New returns a Server with no sockets yet.
func New(b Backend, fns Functions, logger *slog.Logger) *Server {
	return &Server{backend: b, fns: fns, log: logger.With("component", "storage"), open: map[string]*channel{}}
}

// Attach creates the socket in dir (a tenant container's app directory) and
// serves tenant's storage on it until Detach.
func (s *Server) Attach(tenant, dir string) error {
	ch := &channel{tenant: tenant, path: filepath.Join(dir, SocketName), done: make(chan struct{})}
	ch.srv = &http.Server{
		Handler:           s.handler(tenant),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	// Reserve the directory first: a refused Attach must not touch the socket
	// of the one that holds it.
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return errors.New("storage: node is shutting down")
	case s.open[dir] != nil:
		s.mu.Unlock()
		return fmt.Errorf("storage: %s already has a socket", dir)
	}
	s.open[dir] = ch
	s.mu.Unlock()
	ln, err := listenUnix(dir, SocketName)
	if err != nil {
		s.mu.Lock()
		if s.open[dir] == ch {
			delete(s.open, dir)
		}
		s.mu.Unlock()
		close(ch.done)
		return err
	}
	go func() {
		defer close(ch.done)
		// Past maxConns, connections wait in the kernel's backlog, not in
		// the node's descriptors: a container cannot exhaust the node's.
		if err := ch.srv.Serve(netutil.LimitListener(ln, maxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("storage socket stopped", "tenant", tenant, "err", err)
		}
	}()
	return nil
}

// Detach stops serving dir's socket, cutting its open connections, and
// removes the socket file. Detaching a directory without one is a no-op.
func (s *Server) Detach(dir string) {
	s.mu.Lock()
	ch := s.open[dir]
	delete(s.open, dir)
	s.mu.Unlock()
	if ch != nil {
		ch.close()
	}
}

func (ch *channel) close() {
	_ = ch.srv.Close()
	<-ch.done
	_ = os.Remove(ch.path)
}

// Open is the number of sockets served.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// Close detaches every socket and refuses new ones.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	all := s.open
	s.open = map[string]*channel{}
	s.mu.Unlock()
	for _, ch := range all {
		ch.close()
	}
}
