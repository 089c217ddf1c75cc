package buildnet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// dialTimeout bounds the proxy's connection to the registry.
const dialTimeout = 30 * time.Second

// Target is the host:port a registry URL is reached at: the host in lower
// case, the scheme's port when the URL names none.
func Target(registry string) (string, error) {
	u, err := url.Parse(registry)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return "", fmt.Errorf("npm registry %q must be an http(s) URL such as https://registry.npmjs.org/", registry)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	return net.JoinHostPort(normalHost(u.Hostname()), port), nil
}

func normalHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// Allowed decides whether a proxy request may go through: a CONNECT to
// exactly the target's host:port, or (for an http:// registry) a request in
// absolute form for a URL on exactly that host:port. Anything else (another
// host, another port, the registry's name with other case or a trailing dot
// is the same host) is refused.
func Allowed(target, method string, u *url.URL, authority string) bool {
	var host, port string
	if method == http.MethodConnect {
		h, p, err := net.SplitHostPort(authority)
		if err != nil {
			return false
		}
		host, port = h, p
	} else {
		if u == nil || u.Scheme != "http" || u.Host == "" || u.User != nil {
			return false
		}
		host, port = u.Hostname(), u.Port()
		if port == "" {
			port = "80"
		}
	}
	return host != "" && net.JoinHostPort(normalHost(host), port) == target
}

// Proxy is the HTTP proxy build containers reach the registry through: it
// lets through connections to the registry's host:port and refuses every
// other destination before dialling anything. It restricts by host name,
// which firewall rules cannot: a registry's addresses change, are shared
// with other sites (a CDN) and are resolved by DNS the containers do not get.
type Proxy struct {
	target  string
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	forward *httputil.ReverseProxy
	log     *slog.Logger

	mu      sync.Mutex
	tunnels map[net.Conn]struct{}
	closed  bool
}

// NewProxy returns a proxy to the registry at registry (a URL).
func NewProxy(registry string, logger *slog.Logger) (*Proxy, error) {
	target, err := Target(registry)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: dialTimeout}
	p := &Proxy{target: target, dial: d.DialContext, log: logger, tunnels: map[net.Conn]struct{}{}}
	p.forward = &httputil.ReverseProxy{
		// The request is already in absolute form for the registry; the
		// proxy adds nothing about the build container.
		Rewrite:   func(*httputil.ProxyRequest) {},
		Transport: &http.Transport{DialContext: p.dial, Proxy: nil, ResponseHeaderTimeout: 2 * time.Minute},
		ErrorLog:  slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// Target is the host:port the proxy lets through.
func (p *Proxy) Target() string { return p.target }

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	authority := r.Host
	if r.Method == http.MethodConnect && r.URL != nil && r.URL.Host != "" {
		authority = r.URL.Host
	}
	if !Allowed(p.target, r.Method, r.URL, authority) {
		p.log.Warn("build proxy refused a destination", "method", r.Method, "destination", destination(r, authority))
		http.Error(w, fmt.Sprintf("wharf: module builds may only reach the npm registry at %s", p.target), http.StatusForbidden)
		return
	}
	if r.Method != http.MethodConnect {
		p.forward.ServeHTTP(w, r)
		return
	}
	p.tunnel(w, r)
}

// destination is what a refused request asked for, cut short for the log.
func destination(r *http.Request, authority string) string {
	d := authority
	if r.Method != http.MethodConnect && r.URL != nil {
		d = r.URL.Scheme + "://" + r.URL.Host
	}
	if len(d) > 200 {
		d = d[:200]
	}
	return d
}

// tunnel connects the client to the registry and copies bytes both ways
// until either side ends.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request) {
	up, err := p.dial(r.Context(), "tcp", p.target)
	if err != nil {
		p.log.Warn("build proxy could not reach the registry", "registry", p.target, "err", err)
		http.Error(w, "wharf: the npm registry cannot be reached: "+err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "wharf: tunnelling is not supported here", http.StatusInternalServerError)
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !p.track(client, up) {
		return
	}
	defer p.untrack(client, up)
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	splice(client, brw.Reader, up)
}

// splice copies client (read through its buffered reader, which may hold
// bytes sent right after the CONNECT) to up and back; the first direction to
// end closes both.
func splice(client net.Conn, fromClient *bufio.Reader, up net.Conn) {
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, fromClient); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, up); done <- struct{}{} }()
	<-done
	client.Close()
	up.Close()
	<-done
}

// track registers a tunnel's connections so Close can end them; false (and
// both closed) once the proxy is closed.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.tunnels[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.tunnels, c)
	}
}

// CloseTunnels ends every open tunnel and refuses new ones (shutdown).
func (p *Proxy) CloseTunnels() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for c := range p.tunnels {
		c.Close()
	}
}
