package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/fastpath"
	"github.com/wharfhq/wharf/mgmt"
	"github.com/wharfhq/wharf/pool"
)

func (n *Node) startHTTP() {
	e := n.newEcho()
	n.echo = e
	n.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	if n.logs != nil {
		// Live log streams never end on their own: end them when the drain starts.
		n.srv.RegisterOnShutdown(n.logs.CloseStreams)
	}
	serve := n.srv.Serve
	if n.cfg.FastPath {
		n.fast = &fastpath.Server{Handler: e, Fallback: n.srv, Eligible: fastpath.EligibleRunPath,
			ReadHeaderTimeout: n.srv.ReadHeaderTimeout, IdleTimeout: n.srv.IdleTimeout}
		serve = n.fast.Serve
	}
	go func() {
		err := serve(n.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		n.serveErr <- err
		close(n.serveErr)
	}()
}

// newEcho assembles the node's HTTP surface: middleware, health, the
// management API under /api/v1 and the webhooks.
func (n *Node) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errs.HTTPErrorHandler(n.log)
	n.useCommon(e)
	if n.log.Enabled(context.Background(), slog.LevelDebug) {
		e.Use(n.logRequests)
	}

	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", n.readyz)
	if n.metrics != nil {
		e.GET("/metrics", echo.WrapHandler(n.metrics.Handler()))
	}
	var logs mgmt.Logs
	if n.logs != nil {
		logs = n.logs
	}
	api := mgmt.New(n.st, hooks{n}, mgmt.Config{
		MaxCodeBytes: int(n.cfg.MaxCode), DefaultTimeoutMS: n.cfg.FunctionTimeoutMS(), MaxTimeoutMS: n.cfg.MaxTimeoutMS(),
		MaxRequestBytes: int64(n.cfg.MaxBody), MaxResponseBytes: int64(n.cfg.MaxResponse),
		Logs: logs,
	}, n.log)
	if n.mods != nil { // a typed nil would look like a module service
		api.UseModules(n.mods)
	}
	api.Register(e.Group("/api/v1", n.apiMiddleware()...))
	n.proxy.Register(e)
	return e
}

func bodyLimit(n int64) string {
	return itoa(n) + "B"
}

func itoa(n int64) string {
	b := [20]byte{}
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// listen binds the listener before anything slow happens, so a port conflict
// fails the start at once.
func (n *Node) listen() error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return err
	}
	n.ln = ln
	return nil
}

func (n *Node) refuseWhileDraining(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if n.draining.Load() && c.Path() != "/healthz" {
			return errs.Unavailable("draining", 5, nil, "This node is shutting down; retry on another node.")
		}
		return next(c)
	}
}

type check struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Pool only: containers ready now and the target.
	Ready *int `json:"ready,omitempty"`
	Size  *int `json:"size,omitempty"`
}

// readyz answers 200 only when this node can serve: store and engine reachable,
// a warm container ready (or a pool of size 0 by choice), and not draining.
func (n *Node) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	checks := map[string]check{}
	ready := true
	add := func(name string, err error) {
		c := check{OK: err == nil}
		if err != nil {
			c.Error = err.Error()
			ready = false
		}
		checks[name] = c
	}
	add("store", n.st.Ping(ctx))
	add("docker", n.eng.Ping(ctx))
	st := n.pool.Stats()
	add("pool", poolHealth(st, n.cfg.PoolSize))
	pc := checks["pool"]
	pc.Ready, pc.Size = &st.Ready, &n.cfg.PoolSize
	checks["pool"] = pc
	var drainErr error
	if n.draining.Load() {
		drainErr = errors.New("draining")
	}
	add("draining", drainErr)
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, map[string]any{"ready": ready, "checks": checks})
}

// poolHealth: the pool is healthy while ready plus in-flight creations reach
// its minimum (a burst drains it, refills are under way) and creations are
// not failing in a row (the engine is broken).
func poolHealth(st pool.Stats, minSize int) error {
	if st.ConsecutiveFailures >= 3 {
		return fmt.Errorf("container creation failed %d times in a row", st.ConsecutiveFailures)
	}
	if st.Ready+st.Creating < minSize {
		return fmt.Errorf("pool below its minimum: %d ready, %d being created, minimum %d", st.Ready, st.Creating, minSize)
	}
	return nil
}

// logRequests writes one line per request (debug level only).
func (n *Node) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		if err != nil && !c.Response().Committed {
			status = errs.StatusOf(err)
		}
		n.log.Debug("request", "method", c.Request().Method, "path", c.Request().URL.Path, "status", status,
			"duration", time.Since(start), "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		return err
	}
}
