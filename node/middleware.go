package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/mgmt"
)

// useCommon adds what every request goes through: panic recovery (a 500 in
// the JSON error shape, the stack in the log), a request id, and the drain
// check.
func (n *Node) useCommon(e *echo.Echo) {
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		n.log.Error("panic serving request", "path", c.Request().URL.Path, "err", err, "stack", string(stack),
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		return err
	}}))
	e.Use(requestID)
	e.Use(n.refuseWhileDraining)
}

// apiMiddleware is the management API's: an access log (outermost, so it
// sees what the client gets), a body limit leaving room for the JSON
// escaping of the largest code, and a request timeout.
func (n *Node) apiMiddleware() []echo.MiddlewareFunc {
	return []echo.MiddlewareFunc{
		n.accessLog,
		middleware.BodyLimit(bodyLimit(int64(n.cfg.MaxCode)*2 + 64<<10)),
		apiTimeout(n.cfg.APITimeout),
	}
}

// requestIDRE is what a caller's X-Request-Id must look like to be kept: the
// id reaches the function (context.id) and tags its log lines.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}$`)

// requestID gives every request an id, answered in X-Request-Id: the
// caller's own when it is a short token (tracing across systems), else a
// new random one.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rid := c.Request().Header.Get(echo.HeaderXRequestID)
		if !requestIDRE.MatchString(rid) {
			rid = newRequestID()
			c.Request().Header.Set(echo.HeaderXRequestID, rid)
		}
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		return next(c)
	}
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errRequestTimeout is the cause of a context ended by apiTimeout.
var errRequestTimeout = errors.New("management request timed out")

// apiTimeout bounds a management request (mgmt.RequestTimeout says how long;
// live log streams are not bounded). Handlers see the deadline through the
// request's context; one that ran out answers 503 request_timeout.
func apiTimeout(base time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			d, ok := mgmt.RequestTimeout(c.Request(), base)
			if !ok {
				return next(c)
			}
			ctx, cancel := context.WithTimeoutCause(c.Request().Context(), d, errRequestTimeout)
			defer cancel()
			c.SetRequest(c.Request().WithContext(ctx))
			err := next(c)
			if err != nil && errors.Is(context.Cause(ctx), errRequestTimeout) {
				return errs.Unavailable("request_timeout", 1, err, "The request took longer than %s; try again.", d)
			}
			return err
		}
	}
}

// accessLog logs each management request once, structured, without query
// strings or bodies (which may hold secrets).
func (n *Node) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		if err != nil && !c.Response().Committed {
			status = statusOf(err)
		}
		n.log.Info("api request", "method", c.Request().Method, "route", c.Path(), "status", status,
			"ms", time.Since(start).Milliseconds(), "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		return err
	}
}

// statusOf is the status errs.HTTPErrorHandler will answer for err.
func statusOf(err error) int {
	if e := errs.As(err); e != nil {
		return e.Status
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	return http.StatusInternalServerError
}
