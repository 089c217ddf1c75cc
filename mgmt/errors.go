package mgmt

import (
	"context"
	"errors"
	"net/http"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/store"
)

// Stable error codes this package answers with (besides those of errs and
// echo: not_found, method_not_allowed).
const (
	codeUnauthorized          = "unauthorized"
	codeForbidden             = "forbidden"
	codeTenantNotFound        = "tenant_not_found"
	codeTenantExists          = "tenant_exists"
	codeTokenNotFound         = "token_not_found"
	codeFunctionNotFound      = "function_not_found"
	codeVersionNotFound       = "version_not_found"
	codeInvalidTenantName     = "invalid_tenant_name"
	codeInvalidFunctionName   = "invalid_function_name"
	codeInvalidDescription    = "invalid_description"
	codeMissingCode           = "missing_code"
	codeCodeTooLarge          = "code_too_large"
	codeSyntaxError           = "syntax_error"
	codeInvalidDependency     = "invalid_dependency"
	codeTooManyDependencies   = "too_many_dependencies"
	codeDependenciesUnsupport = "dependencies_unsupported"
	codeInvalidSecret         = "invalid_secret"
	codeTooManySecrets        = "too_many_secrets"
	codeInvalidTimeout        = "invalid_timeout"
	codeInvalidWait           = "invalid_wait"
	codeInvalidVersion        = "invalid_version"
	codeBadJSON               = "bad_json"
	codeEmptyBody             = "empty_body"
	codeUnknownField          = "unknown_field"
	codeDuplicateField        = "duplicate_field"
	codeBadFieldType          = "bad_field_type"
	codeBodyTooLarge          = "body_too_large"
	codeUnsupportedMediaType  = "unsupported_media_type"
	codeInvalidBodyLimit      = "invalid_body_limit"
	codeStoreUnavailable      = "store_unavailable"
	codeStoreBusy             = "store_busy"
	codeInternal              = "internal"
)

// storeRetryAfter is the Retry-After hint, in seconds, when the store is unreachable.
const storeRetryAfter = 2

func tenantNotFound(name string) *errs.Error {
	return errs.NotFound(codeTenantNotFound, "Tenant %q not found.", name)
}

func functionNotFound(tenant, name string) *errs.Error {
	return errs.NotFound(codeFunctionNotFound, "Function %q not found in tenant %q.", name, tenant)
}

func versionNotFound(name string, version int) *errs.Error {
	return errs.NotFound(codeVersionNotFound, "Function %q has no version %d.", name, version)
}

func tokenNotFound(id string) *errs.Error {
	return errs.NotFound(codeTokenNotFound, "Token %q not found.", id)
}

func forbidden(format string, args ...any) *errs.Error {
	return errs.New(http.StatusForbidden, codeForbidden, format, args...)
}

// storeError maps an error of the store: store.ErrNotFound to notFound and
// store.ErrExists to exists (when given), an unreachable store to 503
// store_unavailable, anything else to 500. The cause stays attached for the log.
func storeError(err error, notFound, exists *errs.Error) error {
	switch {
	case err == nil:
		return nil
	case errs.As(err) != nil:
		return err
	case notFound != nil && errors.Is(err, store.ErrNotFound):
		notFound.Err = err
		return notFound
	case exists != nil && errors.Is(err, store.ErrExists):
		exists.Err = err
		return exists
	case errors.Is(err, store.ErrConflict):
		return errs.Unavailable(codeStoreBusy, 1, err, "Too many concurrent changes to this function; try again.")
	case unreachable(err):
		return errs.Unavailable(codeStoreUnavailable, storeRetryAfter, err,
			"The store is unavailable; try again shortly.")
	}
	return errs.Wrap(err, http.StatusInternalServerError, codeInternal, "Internal server error.")
}

// unreachable tells whether err looks like the store could not be reached in time.
func unreachable(err error) bool {
	return mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, mongo.ErrClientDisconnected) ||
		errors.As(err, &topology.ServerSelectionError{})
}
