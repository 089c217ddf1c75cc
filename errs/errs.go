// Package errs carries an HTTP status and a stable code with an error, so that
// library code can say what went wrong and the HTTP layer maps it in one place.
package errs

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is an error a client should see: a status, a stable snake_case code
// and a human sentence. Err, when set, is the cause (logged, never shown).
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter int // seconds; set on 503 and 429
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with the given status, code and message.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with a cause.
func Wrap(err error, status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// As returns the *Error in err's chain, or nil.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// StatusOf returns the HTTP status for err: the carried one, or 500.
func StatusOf(err error) int {
	if e := As(err); e != nil {
		return e.Status
	}
	return http.StatusInternalServerError
}

// Common constructors, so codes stay consistent across packages.

func BadRequest(code, format string, args ...any) *Error {
	return New(http.StatusBadRequest, code, format, args...)
}

func NotFound(code, format string, args ...any) *Error {
	return New(http.StatusNotFound, code, format, args...)
}

func Conflict(code, format string, args ...any) *Error {
	return New(http.StatusConflict, code, format, args...)
}

func Unauthorized(format string, args ...any) *Error {
	return New(http.StatusUnauthorized, "unauthorized", format, args...)
}

// Unavailable is a 503 with a Retry-After hint in seconds.
func Unavailable(code string, retryAfter int, cause error, format string, args ...any) *Error {
	e := Wrap(cause, http.StatusServiceUnavailable, code, format, args...)
	e.RetryAfter = retryAfter
	return e
}
