package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

const (
	// bufSize is the connection's read buffer. A request whose head does not
	// fit in it goes to net/http (which allows up to 1 MB of headers).
	bufSize = 4 << 10
	// maxPostHandlerReadBytes is how much of an unread request body is
	// drained to keep the connection (net/http's value); more closes it.
	maxPostHandlerReadBytes = 256 << 10
	// watchAfter is when a request still running starts watching its client
	// connection for a disconnect (net/http watches every request from the
	// start, at the price of a goroutine and a wake-up each).
	watchAfter = 25 * time.Millisecond
)

const (
	stateIdle int32 = iota
	stateActive
	stateGone
)

type conn struct {
	srv   *Server
	nc    net.Conn
	state atomic.Int32
	// pending holds a byte the disconnect watch read: the start of a
	// pipelined request, given back before anything else is read.
	pending []byte
	watch   watch
	// Kept across the connection's requests: its peer's address, and the
	// response writer with its header map (cleared, not reallocated).
	remote string
	rw     responseWriter
}

var (
	readerPool    = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writerPool    = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
	errHeadTooBig = errors.New("request head larger than the fast path's buffer")
)

// Read is the connection as the buffered reader sees it.
func (c *conn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.nc.Read(p)
}

// closeIfIdle closes the connection if it is waiting for a request.
func (c *conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateGone) {
		_ = c.nc.Close()
	}
}

func (c *conn) serve() {
	handedOff := false
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c)
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(c.nc)
	defer func() {
		c.srv.track(c, false)
		if !handedOff {
			_ = c.nc.Close()
			br.Reset(nil)
			readerPool.Put(br)
		}
		bw.Reset(nil)
		writerPool.Put(bw)
	}()

	for {
		// Waiting for a request: idle, closable by Shutdown.
		if !c.state.CompareAndSwap(stateActive, stateIdle) && c.state.Load() == stateGone {
			return
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.idleTimeout()))
		if _, err := br.Peek(1); err != nil {
			return
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // Shutdown closed it
		}
		// A head that arrived whole (the usual case) needs no deadline of its
		// own: peekHead then reads nothing.
		if b, _ := br.Peek(br.Buffered()); headEnd(b) < 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.readHeaderTimeout()))
		}
		head, err := peekHead(br)
		if errors.Is(err, errHeadTooBig) || (err == nil && !eligible(head, c.srv.Eligible)) {
			// Not ours: net/http reads it again from its first byte and
			// answers as it would, on this connection from now on.
			_ = c.nc.SetReadDeadline(time.Time{})
			handedOff = c.srv.handoff.give(&prefixConn{Conn: c.nc, r: br})
			return
		}
		if err != nil {
			return // the client left or stalled in the middle of a head
		}
		req, err := http.ReadRequest(br)
		if err == nil {
			err = validHeader(req.Header)
		}
		if err != nil {
			// net/http's answer to a malformed head: 400, connection closed.
			writeSimple(bw, http.StatusBadRequest)
			return
		}
		_ = c.nc.SetReadDeadline(time.Time{})
		if !c.serveRequest(req, bw) || c.srv.isClosing() {
			return
		}
	}
}

// serveRequest runs one request; it reports whether the connection may serve
// another.
func (c *conn) serveRequest(req *http.Request, bw *bufio.Writer) (keep bool) {
	c.srv.inFlight.Add(1)
	defer c.srv.inFlight.Add(-1)
	if c.remote == "" {
		c.remote = c.nc.RemoteAddr().String()
	}
	req.RemoteAddr = c.remote
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req = req.WithContext(ctx)
	// The client's disconnect cancels the request, as with net/http; but
	// the connection is watched only once the body is read and the request
	// has run for watchAfter.
	c.watch.reset(c, cancel)
	if req.Body == nil || req.Body == http.NoBody {
		c.watch.arm()
	} else {
		req.Body = &eofBody{ReadCloser: req.Body, onEOF: c.watch.arm}
	}
	h := c.rw.header
	if h == nil {
		h = http.Header{}
	}
	clear(h)
	w := &c.rw
	*w = responseWriter{bw: bw, req: req, header: h}
	defer func() {
		if v := recover(); v != nil {
			// http.ErrAbortHandler (a cut proxied response) or a panic the
			// handler's own recovery did not take: the answer cannot be
			// trusted, so the connection ends without completing it (what
			// was written goes out first, as net/http does: the client sees
			// a response cut short, not a silent close).
			if v != http.ErrAbortHandler {
				slog.Error("fastpath: panic serving a request", "remote", req.RemoteAddr, "path", req.URL.Path, "panic", v)
			}
			c.watch.stop()
			_ = bw.Flush()
			keep = false
		}
	}()
	c.srv.Handler.ServeHTTP(w, req)
	c.watch.stop()
	if err := w.finish(); err != nil || ctx.Err() != nil {
		return false
	}
	if w.closeAfter || req.Close {
		return false
	}
	// Drain what the handler left of the body, within reason.
	if req.Body != nil && req.Body != http.NoBody {
		n, err := io.CopyN(io.Discard, req.Body, maxPostHandlerReadBytes+1)
		if n > maxPostHandlerReadBytes || (err != nil && err != io.EOF) {
			return false
		}
	}
	return true
}

// peekHead returns the request's head (request line and header lines, up to
// the empty line) without consuming it.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for {
		// What is buffered first (no read); then one byte more than that,
		// which waits for the client.
		b, _ := br.Peek(br.Buffered())
		if i := headEnd(b); i >= 0 {
			return b[:i], nil
		}
		if len(b) >= br.Size() {
			return nil, errHeadTooBig
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return nil, err
		}
	}
}

// headEnd is the length of the head in b (its last line feed included), or
// -1. Like net/textproto, a bare LF ends a line too.
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// eligible: "METHOD target HTTP/1.1", a target the server accepts, no
// Expect header, at most one Content-Length or Transfer-Encoding line, and
// exactly one valid Host header (net/http's own checks before it drops the
// header: http.ReadRequest does not make them).
func eligible(head []byte, accept func([]byte) bool) bool {
	lineEnd := bytes.IndexByte(head, '\n')
	if lineEnd < 0 {
		return false
	}
	line := bytes.TrimSuffix(head[:lineEnd], []byte("\r"))
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return false
	}
	if accept == nil {
		accept = EligibleRunPath
	}
	if !accept(rest[:sp2]) {
		return false
	}
	hosts, framings := 0, 0
	// Line by line without splitting: this runs on every webhook request.
	for rest := head[lineEnd+1:]; len(rest) > 0; {
		l := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(l) >= 7 && bytes.EqualFold(l[:7], []byte("expect:")) {
			return false // 100-continue and its refusals: net/http's
		}
		if len(l) >= 15 && bytes.EqualFold(l[:15], []byte("content-length:")) ||
			len(l) >= 18 && bytes.EqualFold(l[:18], []byte("transfer-encoding:")) {
			// Both (or either twice) is how request smuggling starts: that
			// odd case is net/http's to judge, never the fast path's.
			if framings++; framings > 1 {
				return false
			}
		}
		if len(l) >= 5 && bytes.EqualFold(l[:5], []byte("host:")) {
			hosts++
			if !validHost(bytes.TrimSpace(l[5:])) {
				return false
			}
		}
	}
	return hosts == 1
}

// validHeader makes net/http's server checks that http.ReadRequest leaves
// out (it accepts a space in a field name, for clients).
func validHeader(h http.Header) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid value of header %q", k)
			}
		}
	}
	return nil
}

// validHost: the characters a Host header may hold (net/http's rule).
func validHost(h []byte) bool {
	for _, b := range h {
		ok := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			strings.IndexByte("!$%&'()*+,-.:;=[]_~", b) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// prefixConn is a connection whose first bytes were already read into r.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if p.r != nil {
		if p.r.Buffered() > 0 {
			return p.r.Read(b)
		}
		p.r = nil // drained: read the connection directly from now on
	}
	return p.Conn.Read(b)
}

// handoffListener gives connections to the fallback server.
type handoffListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
