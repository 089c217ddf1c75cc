package errs

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// Body is the JSON shape of every error Wharf answers (API.md).
type Body struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// HTTPErrorHandler is the one place errors become HTTP responses: *Error keeps
// its status and code, echo's own errors (404 route, 405, body too large) are
// translated, anything else is a logged 500 whose cause is not shown.
func HTTPErrorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, body, retry := translate(err)
		// 503 and 504 are expected under load (no container, draining, a
		// function's timeout): counted in metrics, logged at debug only.
		level := slog.LevelError
		if status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout || status < 500 {
			level = slog.LevelDebug
		}
		logger.Log(c.Request().Context(), level, "request failed", "method", c.Request().Method, "path", c.Request().URL.Path,
			"status", status, "code", body.Code, "err", err,
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		if retry > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(retry))
		}
		if c.Request().Method == http.MethodHead {
			err = c.NoContent(status)
		} else {
			err = c.JSON(status, body)
		}
		if err != nil {
			logger.Debug("write error response", "err", err)
		}
	}
}

func translate(err error) (int, Body, int) {
	if e := As(err); e != nil {
		return e.Status, Body{Error: e.Message, Code: e.Code}, e.RetryAfter
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok && s != "" {
			msg = s
		}
		return he.Code, Body{Error: sentence(msg), Code: codeFor(he.Code)}, 0
	}
	return http.StatusInternalServerError, Body{Error: "Internal server error.", Code: "internal"}, 0
}

func codeFor(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusGatewayTimeout:
		return "timeout"
	}
	return strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "_")
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
