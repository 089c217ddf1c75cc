package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// lockFileName is the file in a data directory that one process holds an
// exclusive flock on while it serves the directory.
const lockFileName = "wharf.lock"

// ferretNewMu serialises ferretdb.New, which writes a package-level variable
// of FerretDB (its version info) without synchronisation.
var ferretNewMu sync.Mutex

// Embedded is a FerretDB server (SQLite backend) running inside this process.
type Embedded struct {
	f       *ferretdb.FerretDB
	uri     string
	cancel  context.CancelFunc
	done    chan struct{} // closed when Run returned
	lock    *os.File
	dataDir string
	once    sync.Once
}

// StartEmbedded starts an embedded MongoDB-wire server (FerretDB on SQLite)
// storing its data in dataDir and listening on listenAddr (e.g. "127.0.0.1:0"),
// and returns once it accepts connections. Only one process may serve a data
// directory at a time. Stop it with Close; ctx bounds only the start.
func StartEmbedded(ctx context.Context, dataDir, listenAddr string, logger *slog.Logger) (*Embedded, error) {
	if dataDir == "" {
		return nil, errors.New("store: embedded: empty data directory")
	}
	if listenAddr == "" {
		return nil, errors.New("store: embedded: empty listen address")
	}
	if logger == nil {
		logger = slog.Default()
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("store: embedded: data directory %s: %w", dataDir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("store: embedded: creating data directory: %w", err)
	}
	lock, err := lockDataDir(abs)
	if err != nil {
		return nil, err
	}

	// FerretDB 1.24 leaks its SQLite backend when its listener cannot bind, and
	// the leaked backend's finalizer panics (crashing the process) at a later
	// GC. So bind the address here first and hand FerretDB the concrete address
	// (which resolves port 0 too); a bad or busy address fails cleanly here.
	addr, err := probeListen(listenAddr)
	if err != nil {
		unlockDataDir(lock)
		return nil, err
	}

	ferretLogger := slog.New(minLevelHandler{min: slog.LevelWarn, h: logger.Handler(), drop: isResponseDump}).With("component", "ferretdb")
	ferretNewMu.Lock()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    ferretLogger,
	})
	ferretNewMu.Unlock()
	if err != nil {
		unlockDataDir(lock)
		return nil, fmt.Errorf("store: embedded: starting FerretDB on %s: %w", listenAddr, err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	e := &Embedded{f: f, cancel: cancel, done: make(chan struct{}), lock: lock, dataDir: abs}
	go func() {
		defer close(e.done)
		if err := f.Run(runCtx); err != nil {
			logger.Error("embedded store stopped", "component", "ferretdb", "error", err)
		}
	}()
	// The listener is bound by New, so the URI is known already.
	e.uri = localURI(f.MongoDBURI())
	if err := e.waitAccepting(ctx); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// probeListen binds addr, releases it, and returns the bound address.
func probeListen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("store: embedded: cannot listen on %s: %w", addr, err)
	}
	bound := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("store: embedded: cannot listen on %s: %w", addr, err)
	}
	return bound, nil
}

// localURI rewrites a URI whose host is a wildcard address (listening on all
// interfaces) to one this process can dial: the IPv4 loopback.
func localURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return uri
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("127.0.0.1", port)
	}
	return u.String()
}

// waitAccepting returns once a TCP connection to the server succeeds.
func (e *Embedded) waitAccepting(ctx context.Context) error {
	u, err := url.Parse(e.uri)
	if err != nil {
		return fmt.Errorf("store: embedded: FerretDB URI %q: %w", e.uri, err)
	}
	host := u.Host
	d := net.Dialer{Timeout: time.Second}
	delay := time.Millisecond
	for {
		conn, err := d.DialContext(ctx, "tcp", host)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("store: embedded: waiting for FerretDB on %s: %w", host, ctx.Err())
		case <-e.done:
			t.Stop()
			return fmt.Errorf("store: embedded: FerretDB on %s stopped during start", host)
		case <-t.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// URI is the MongoDB connection string of the server.
func (e *Embedded) URI() string { return e.uri }

// DataDir is the absolute data directory the server stores its data in.
func (e *Embedded) DataDir() string { return e.dataDir }

// Close stops the server, waits until it has stopped and releases the data
// directory. It is safe to call more than once.
func (e *Embedded) Close() {
	e.once.Do(func() {
		e.cancel()
		<-e.done
		unlockDataDir(e.lock)
	})
}

// minLevelHandler drops records below min, and those drop reports, before
// they reach h.
type minLevelHandler struct {
	min  slog.Level
	h    slog.Handler
	drop func(slog.Record) bool // optional
}

// isResponseDump reports FerretDB's dump of a failed command's whole response,
// which it logs at Warn for every ok:0 reply; the client gets that error
// anyway. The commonest is the driver's endSessions on every disconnect,
// which FerretDB does not implement. Errors that close the connection are
// logged at Error and kept. Also dropped: a benign warning of FerretDB's
// shutdown about a connection the client had closed already.
func isResponseDump(r slog.Record) bool {
	if r.Level >= slog.LevelError {
		return false
	}
	return strings.HasPrefix(r.Message, "Response header: ") ||
		strings.HasPrefix(r.Message, "Response message:") ||
		(strings.HasPrefix(r.Message, "Failed to set deadline:") && strings.HasSuffix(r.Message, "use of closed network connection"))
}

func (m minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}

func (m minLevelHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < m.min || (m.drop != nil && m.drop(r)) {
		return nil
	}
	return m.h.Handle(ctx, r)
}

func (m minLevelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevelHandler{min: m.min, h: m.h.WithAttrs(attrs), drop: m.drop}
}

func (m minLevelHandler) WithGroup(name string) slog.Handler {
	return minLevelHandler{min: m.min, h: m.h.WithGroup(name), drop: m.drop}
}
