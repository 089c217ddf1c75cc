// Package proxy serves tenants' webhooks: /run/{tenant}/{name}/... is routed
// to the tenant's container and reverse-proxied to its bridge IP.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/handler"
	"github.com/wharfhq/wharf/pool"
)

// Functions finds a function's current version (the node's catalog).
type Functions interface {
	Get(ctx context.Context, tenant, name string) (*catalog.Function, error)
}

// Containers gives a tenant its container (the handler).
type Containers interface {
	Acquire(ctx context.Context, tenant string) (*handler.Assignment, bool, error)
	Provision(a *handler.Assignment, fn *catalog.Function) error
	Release(a *handler.Assignment)
	Fail(a *handler.Assignment, reason string)
	Suspect(a *handler.Assignment)
}

// Observer receives request figures (metrics); nil means none.
type Observer interface {
	Request(tenant string, cold bool, status int, d time.Duration)
	ColdStart(claim, provision, firstByte time.Duration)
	ProxyError(status int)
}

// Config configures the proxy.
type Config struct {
	ClaimTimeout     time.Duration // how long a request waits for a container (then 503)
	DefaultTimeoutMS int           // function timeout when a function sets none
	MaxBodyBytes     int64         // request body limit
	RunnerPort       int           // the runner's port in every container (default pool.RunnerPort)
	Observer         Observer
	MaxResponseBytes int64         // response body limit
	Tenants          TenantLimiter // per-tenant requests in flight; nil: unlimited
}

// Proxy routes invocations to containers.
type Proxy struct {
	cfg Config
	fns Functions
	ctr Containers
	log *slog.Logger
	rp  *httputil.ReverseProxy
	tr  *http.Transport
}

var (
	tenantRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	nameRe   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`)
)

// Headers between the proxy and the runner; clients can never set them.
const (
	hdrFunction  = "X-Wharf-Function"
	hdrVersion   = "X-Wharf-Version"
	hdrRequestID = "X-Wharf-Request-Id"
	hdrSource    = "X-Wt-Response-Source"
)

type ctxKey struct{}

// call is the per-request state the reverse proxy's hooks need.
type call struct {
	a       *handler.Assignment
	fn      *catalog.Function
	timeout context.Context // carries the function's deadline
	ms      int             // the effective timeout, for the 504 message
	err     error           // set by the error hook, returned to echo

	cold                        bool
	claim, provision, firstByte time.Duration
	maxReq, maxResp             int64 // this function's body limits (its own, capped by the node's)
	sent                        time.Time
}

// New returns a proxy.
func New(cfg Config, fns Functions, ctr Containers, logger *slog.Logger) *Proxy {
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = 10 * time.Second
	}
	if cfg.DefaultTimeoutMS <= 0 {
		cfg.DefaultTimeoutMS = 30_000
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 6 << 20
	}
	if cfg.RunnerPort <= 0 {
		cfg.RunnerPort = pool.RunnerPort
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = 6 << 20
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 256,
		// Shorter than the runner's keep-alive timeout, so the runner never
		// closes a connection the proxy is about to reuse.
		IdleConnTimeout:    55 * time.Second,
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
	}
	p := &Proxy{cfg: cfg, fns: fns, ctr: ctr, log: logger.With("component", "proxy"), tr: tr}
	p.rp = &httputil.ReverseProxy{
		Transport: tr,
		Rewrite:   func(*httputil.ProxyRequest) {}, // the outgoing request is built in serve
		// 0 buffers ordinary responses; ReverseProxy still flushes streaming
		// ones (event streams, unknown length) at once.
		FlushInterval: 0,
		ErrorHandler:  p.proxyError,
		ModifyResponse: func(resp *http.Response) error {
			if cl, ok := resp.Request.Context().Value(ctxKey{}).(*call); ok {
				cl.firstByte = time.Since(cl.sent)
			}
			return nil
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	p.rp.ModifyResponse = p.limitResponse
	return p
}

// Register mounts the invocation routes on e.
func (p *Proxy) Register(e *echo.Echo) {
	for _, prefix := range []string{"/run", "/api/run"} {
		e.Any(prefix+"/:tenant/:name", p.serve)
		e.Any(prefix+"/:tenant/:name/*", p.serve)
	}
}

// Close releases idle connections to containers.
func (p *Proxy) Close() { p.tr.CloseIdleConnections() }

func (p *Proxy) serve(c echo.Context) error {
	start := time.Now()
	cl := &call{}
	err := p.route(c, cl)
	if cl.a != nil {
		p.ctr.Release(cl.a)
	}
	status := c.Response().Status
	if err != nil && !c.Response().Committed {
		c.Response().Header().Set(hdrSource, "proxy")
		status = errs.StatusOf(err)
	}
	if o := p.cfg.Observer; o != nil {
		o.Request(c.Param("tenant"), cl.cold, status, time.Since(start))
		if cl.cold && cl.a != nil {
			o.ColdStart(cl.claim, cl.provision, cl.firstByte)
		}
		if err != nil {
			o.ProxyError(status)
		}
	}
	return err
}

func (p *Proxy) route(c echo.Context, cl *call) error {
	req, w := c.Request(), c.Response()
	tenant, name := c.Param("tenant"), c.Param("name")
	if !tenantRe.MatchString(tenant) || !nameRe.MatchString(name) {
		return errs.NotFound("function_not_found", "No such function.")
	}
	if req.ContentLength > p.cfg.MaxBodyBytes {
		return bodyTooLarge(p.cfg.MaxBodyBytes)
	}
	fn, err := p.fns.Get(req.Context(), tenant, name)
	if errors.Is(err, catalog.ErrNotFound) {
		return errs.NotFound("function_not_found", "No function %q for tenant %q.", name, tenant)
	} else if err != nil {
		return errs.Unavailable("store_unavailable", 2, err, "The function could not be loaded; retry shortly.")
	}
	cl.maxReq = bodyLimit(p.cfg.MaxBodyBytes, fn.MaxRequestBytes)
	cl.maxResp = bodyLimit(p.cfg.MaxResponseBytes, fn.MaxResponseBytes)
	if req.ContentLength > cl.maxReq {
		return bodyTooLarge(cl.maxReq)
	}
	if p.cfg.Tenants != nil {
		release, err := p.cfg.Tenants.Acquire(req.Context(), tenant)
		if err != nil {
			return err
		}
		defer release()
	}
	claimCtx, cancelClaim := context.WithTimeout(req.Context(), p.cfg.ClaimTimeout)
	t0 := time.Now()
	a, cold, err := p.ctr.Acquire(claimCtx, tenant)
	cancelClaim()
	cl.cold, cl.claim = cold, time.Since(t0)
	if err != nil {
		return err
	}
	cl.a, cl.fn = a, fn
	t1 := time.Now()
	if err := p.ctr.Provision(a, fn); err != nil {
		return err
	}
	cl.provision = time.Since(t1)

	timeoutMS := fn.TimeoutMS
	if timeoutMS <= 0 {
		timeoutMS = p.cfg.DefaultTimeoutMS
	}
	ctx, cancel := context.WithTimeout(req.Context(), time.Duration(timeoutMS)*time.Millisecond)
	defer cancel()
	cl.timeout, cl.ms = ctx, timeoutMS
	out := req.Clone(context.WithValue(ctx, ctxKey{}, cl))
	out.URL.Scheme = "http"
	out.URL.Host = net.JoinHostPort(a.C.IP, strconv.Itoa(p.cfg.RunnerPort))
	// The runner sees webtask's url_format 1 path, whichever alias was used.
	out.URL.Path = "/api/run/" + tenant + "/" + name + restOf(c.Param("*"))
	out.URL.RawPath = ""
	out.Host = req.Host
	for k := range out.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-wharf-") {
			out.Header.Del(k)
		}
	}
	out.Header.Set(hdrFunction, name)
	out.Header.Set(hdrVersion, strconv.Itoa(fn.Version))
	rid := w.Header().Get(echo.HeaderXRequestID)
	if rid == "" { // normally set by the request-id middleware
		rid = newRequestID()
		w.Header().Set(echo.HeaderXRequestID, rid)
	}
	out.Header.Set(hdrRequestID, rid)
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = http.MaxBytesReader(w, req.Body, cl.maxReq)
	}
	cl.sent = time.Now()
	p.rp.ServeHTTP(w, out)
	return cl.err
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func restOf(rest string) string {
	if rest == "" {
		return ""
	}
	return "/" + rest
}

// proxyError classifies a failed round trip: the function's deadline → 504
// (and the runner is checked), an oversized body → 413, the client leaving →
// nothing to answer, anything else means the container is broken → 502 and
// it is replaced.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	cl, _ := r.Context().Value(ctxKey{}).(*call)
	if cl == nil { // cannot happen: serve always sets it
		cl = &call{timeout: r.Context()}
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		cl.err = bodyTooLarge(mbe.Limit)
	case errors.Is(err, errResponseTooLarge):
		cl.err = responseTooLarge(cl.maxResp)
	case errors.Is(cl.timeout.Err(), context.DeadlineExceeded):
		p.ctr.Suspect(cl.a)
		cl.err = errs.New(http.StatusGatewayTimeout, "function_timeout",
			"The function did not finish within its timeout of %d ms.", cl.ms)
	case r.Context().Err() != nil:
		cl.err = nil // the client went away; nobody to answer
		w.WriteHeader(499)
	default:
		p.ctr.Fail(cl.a, fmt.Sprintf("proxy: %v", err))
		cl.err = errs.Wrap(err, http.StatusBadGateway, "container_failed",
			"The function's container failed while serving the request; the next request gets a fresh one.")
	}
}

func bodyTooLarge(limit int64) error {
	return errs.New(http.StatusRequestEntityTooLarge, "body_too_large", "The request body exceeds the limit of %d bytes.", limit)
}
