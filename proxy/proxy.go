// Package proxy serves tenants' webhooks: /run/{tenant}/{name}/... is routed
// to the tenant's container and reverse-proxied to its bridge IP.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
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
	Warm(tenant string) *handler.Assignment // the tenant's container, held, or nil
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
	cfg  Config
	fns  Functions
	ctr  Containers
	log  *slog.Logger
	up   *upstreams
	port string // the runners' port
}

// Headers between the proxy and the runner. A client can never set
// X-Wharf-Route (<function>@<version>; every x-wharf-* header is dropped) or
// the X-Request-Id the runner gets, which is always the request's id, once.
const (
	hdrRoute     = "X-Wharf-Route"
	hdrRequestID = echo.HeaderXRequestID // the node's request-id middleware sets it
	hdrSource    = "X-Wt-Response-Source"
)

// call is the per-request state of one invocation.
type call struct {
	a  *handler.Assignment
	fn *catalog.Function
	// deadline is the function's: set on the connection to the runner, so
	// the exchange needs no timer or context of its own.
	deadline time.Time
	ms       int // the effective timeout, for the 504 message

	cold                                bool
	lookup, claim, provision, firstByte time.Duration
	maxReq, maxResp                     int64 // this function's body limits (its own, capped by the node's)
	sent                                time.Time
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
	// Idle connections are closed here after 55 s: the runner never closes
	// one itself (it has no keep-alive timeout), so it cannot close one the
	// proxy is about to reuse.
	up := newUpstreams(2*time.Second, 55*time.Second, 256)
	return &Proxy{cfg: cfg, fns: fns, ctr: ctr, log: logger.With("component", "proxy"), up: up,
		port: strconv.Itoa(cfg.RunnerPort)}
}

// Register mounts the invocation routes on e.
func (p *Proxy) Register(e *echo.Echo) {
	for _, prefix := range []string{"/run", "/api/run"} {
		e.Any(prefix+"/:tenant/:name", p.serve)
		e.Any(prefix+"/:tenant/:name/*", p.serve)
	}
}

// Close releases idle connections to containers.
func (p *Proxy) Close() { p.up.close() }

func (p *Proxy) serve(c echo.Context) error {
	start := time.Now()
	cl := &call{}
	err := p.route(c, cl)
	if cl.a != nil {
		p.ctr.Release(cl.a)
	}
	w := c.Response()
	var committed *committedError
	aborted := errors.As(err, &committed)
	status := w.Status
	switch {
	case errors.Is(err, errClientGone):
		status = 499 // nobody to answer; recorded as nginx does
		if !w.Committed {
			w.WriteHeader(status)
		}
		err = nil
	case err != nil && !aborted && !w.Committed:
		w.Header().Set(hdrSource, "proxy")
		status = errs.StatusOf(err)
	}
	if cl.cold && cl.a != nil {
		// Once per tenant and node: where a first request's time went.
		p.log.Info("cold start", "tenant", c.Param("tenant"), "function", c.Param("name"), "status", status,
			"total_ms", ms(time.Since(start)), "lookup_ms", ms(cl.lookup), "claim_ms", ms(cl.claim),
			"provision_ms", ms(cl.provision), "first_byte_ms", ms(cl.firstByte))
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
	if aborted {
		// The answer is under way: cut the client connection so a partial
		// response never looks complete (what httputil.ReverseProxy does).
		panic(http.ErrAbortHandler)
	}
	return err
}

// ms is a duration in milliseconds, to 3 decimals, for logs.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (p *Proxy) route(c echo.Context, cl *call) error {
	req, w := c.Request(), c.Response()
	tenant, name := c.Param("tenant"), c.Param("name")
	if !validTenant(tenant) || !validName(name) {
		return errs.NotFound("function_not_found", "No such function.")
	}
	if req.ContentLength > p.cfg.MaxBodyBytes {
		return bodyTooLarge(p.cfg.MaxBodyBytes)
	}
	tl := time.Now()
	fn, err := p.fns.Get(req.Context(), tenant, name)
	cl.lookup = time.Since(tl)
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
	t0 := time.Now()
	a := p.ctr.Warm(tenant)
	if a == nil {
		claimCtx, cancelClaim := context.WithTimeout(req.Context(), p.cfg.ClaimTimeout)
		var cold bool
		a, cold, err = p.ctr.Acquire(claimCtx, tenant)
		cancelClaim()
		cl.cold, cl.claim = cold, time.Since(t0)
		if err != nil {
			return err
		}
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
	cl.deadline, cl.ms = time.Now().Add(time.Duration(timeoutMS)*time.Millisecond), timeoutMS
	rid := w.Header().Get(hdrRequestID)
	if rid == "" { // normally set by the request-id middleware
		rid = newRequestID()
		w.Header().Set(hdrRequestID, rid)
	}
	out := &outbound{target: runnerTarget(req), function: name, version: strconv.Itoa(fn.Version), requestID: rid}
	if host, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		out.forwarded = host
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = http.MaxBytesReader(w, req.Body, cl.maxReq)
	}
	cl.sent = time.Now()
	if err := p.forward(req.Context(), w, req, cl, out); err != nil {
		return p.classify(err, req, cl)
	}
	return nil
}

// runnerTarget is the request-target the runner gets: webtask's url_format 1
// path (/api/run/...), whichever alias was used, with the client's own
// escaping and query.
func runnerTarget(req *http.Request) string {
	path := req.URL.EscapedPath()
	if strings.HasPrefix(path, "/run/") {
		path = "/api" + path
	}
	if req.URL.RawQuery != "" || req.URL.ForceQuery {
		return path + "?" + req.URL.RawQuery
	}
	return path
}

// validTenant and validName check ^[a-z0-9][a-z0-9-]{0,62}$ and
// ^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$ without a regexp engine on the hot path
// (TestValidNames holds them to the patterns).
func validTenant(s string) bool {
	if len(s) == 0 || len(s) > 63 || !isLowerAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isLowerAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '-' && s[i] != '_' {
			return false
		}
	}
	return true
}

func isLowerAlnum(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }
func isAlnum(b byte) bool      { return isLowerAlnum(b) || b >= 'A' && b <= 'Z' }

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func functionTimeout(ms int) error {
	return errs.New(http.StatusGatewayTimeout, "function_timeout", "The function did not finish within its timeout of %d ms.", ms)
}

func containerFailed(err error) error {
	return errs.Wrap(err, http.StatusBadGateway, "container_failed",
		"The function's container failed while serving the request; the next request gets a fresh one.")
}

func badBody(err error) error {
	return errs.Wrap(err, http.StatusBadRequest, "bad_request_body", "The request body could not be read.")
}

func bodyTooLarge(limit int64) error {
	return errs.New(http.StatusRequestEntityTooLarge, "body_too_large", "The request body exceeds the limit of %d bytes.", limit)
}
