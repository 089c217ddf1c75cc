package mgmt

import (
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wharfhq/wharf/compiler"
	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/npmspec"
)

// Limits of what a function may declare (API.md and the mgmt brief).
const (
	MaxDependencies     = 50
	MaxSecrets          = 100
	MaxSecretValueBytes = 64 << 10
	MaxDescriptionRunes = 256
	maxNPMNameLen       = npmspec.MaxNameLen
	maxQuoted           = 80 // longest user value echoed back in a message
)

var (
	tenantNameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	functionNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`)
	secretNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	tokenIDRE      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
)

// validateTenantName checks a tenant name given in a request body.
func validateTenantName(name string) error {
	if !tenantNameRE.MatchString(name) {
		return errs.BadRequest(codeInvalidTenantName,
			"Tenant name %s is invalid: use 1 to 63 lowercase letters, digits and '-', starting with a letter or digit.",
			quote(name))
	}
	return nil
}

// validateFunctionName checks a function name.
func validateFunctionName(name string) error {
	if !functionNameRE.MatchString(name) {
		return errs.BadRequest(codeInvalidFunctionName,
			"Function name %s is invalid: use 1 to 64 letters, digits, '_' and '-', starting with a letter or digit.",
			quote(name))
	}
	return nil
}

// validateDescription checks a token's description.
func validateDescription(d string) error {
	if utf8.RuneCountInString(d) > MaxDescriptionRunes {
		return errs.BadRequest(codeInvalidDescription,
			"The description is longer than %d characters.", MaxDescriptionRunes)
	}
	if strings.ContainsFunc(d, unicode.IsControl) {
		return errs.BadRequest(codeInvalidDescription, "The description must not contain control characters.")
	}
	return nil
}

// validateCode checks a function's code: present, not blank, at most max bytes.
func validateCode(code string, max int) error {
	if strings.TrimSpace(code) == "" {
		return errs.BadRequest(codeMissingCode, "Field \"code\" is required and must not be empty.")
	}
	if len(code) > max {
		return errs.New(http.StatusRequestEntityTooLarge, codeCodeTooLarge,
			"The code is %d bytes; at most %d bytes are allowed.", len(code), max)
	}
	return nil
}

// compileCode checks the code's syntax and compiles 'use latest' code once, at
// deploy (package compiler): a syntax error is a 400 naming line and column.
func compileCode(code string) (string, error) {
	compiled, err := compiler.Compile(code)
	var se *compiler.SyntaxError
	if errors.As(err, &se) {
		return "", errs.Wrap(err, http.StatusBadRequest, codeSyntaxError,
			"The code has a syntax error at line %d, column %d: %s.", se.Line, se.Column, strings.TrimSuffix(se.Message, "."))
	}
	return compiled, err
}

// validateDependencies checks every dependency, in name order so the error
// is always about the same entry.
func validateDependencies(deps map[string]string) error {
	if len(deps) > MaxDependencies {
		return errs.BadRequest(codeTooManyDependencies,
			"A function may declare at most %d dependencies; this one declares %d.", MaxDependencies, len(deps))
	}
	for _, name := range sortedKeys(deps) {
		if !validNPMName(name) {
			return errs.BadRequest(codeInvalidDependency,
				"Dependency %s is not a valid npm package name (lowercase, URL-safe, optional @scope/, at most %d characters).",
				quote(name), maxNPMNameLen)
		}
		if v := deps[name]; !validExactVersion(v) {
			return errs.BadRequest(codeInvalidDependency,
				"Dependency %s must have an exact version such as 1.2.3, not %s: ranges, tags, URLs, git and file specs are not allowed.",
				quote(name), quote(v))
		}
	}
	return nil
}

// validNPMName tells whether name is a valid npm package name for a new package.
func validNPMName(name string) bool { return npmspec.ValidName(name) }

// validExactVersion tells whether v is one exact semantic version, as npm accepts it.
func validExactVersion(v string) bool { return npmspec.ValidExactVersion(v) }

// validateSecrets checks secret names and values; messages never show a value.
func validateSecrets(secrets map[string]string) error {
	if len(secrets) > MaxSecrets {
		return errs.BadRequest(codeTooManySecrets,
			"A function may have at most %d secrets; this one has %d.", MaxSecrets, len(secrets))
	}
	for _, name := range sortedKeys(secrets) {
		if !secretNameRE.MatchString(name) {
			return errs.BadRequest(codeInvalidSecret,
				"Secret name %s is invalid: use 1 to 128 letters, digits and '_', not starting with a digit.",
				quote(name))
		}
		if n := len(secrets[name]); n > MaxSecretValueBytes {
			return errs.BadRequest(codeInvalidSecret,
				"Secret %q is %d bytes; at most %d bytes are allowed.", name, n, MaxSecretValueBytes)
		}
	}
	return nil
}

// validateBodyLimit checks a function's body limit: 0 keeps the node's limit
// (nodeMax), else it must be positive and at most the node's limit.
func validateBodyLimit(field string, v, nodeMax int64) error {
	if v == 0 || (v > 0 && (nodeMax <= 0 || v <= nodeMax)) {
		return nil
	}
	if nodeMax <= 0 {
		return errs.BadRequest(codeInvalidBodyLimit, "Field %q must be a positive number of bytes, or 0 for the node's limit.", field)
	}
	return errs.BadRequest(codeInvalidBodyLimit,
		"Field %q must be between 1 and this node's limit of %d bytes, or 0 for the node's limit.", field, nodeMax)
}

// resolveTimeout checks timeout_ms and returns the one to store: 0 means the default.
func resolveTimeout(ms int, cfg Config) (int, error) {
	switch {
	case ms == 0:
		return cfg.DefaultTimeoutMS, nil
	case ms < 1 || ms > cfg.MaxTimeoutMS:
		return 0, errs.BadRequest(codeInvalidTimeout,
			"Field \"timeout_ms\" must be between 1 and %d, or 0 for the default of %d.",
			cfg.MaxTimeoutMS, cfg.DefaultTimeoutMS)
	}
	return ms, nil
}

// parseWait checks the ?wait= query parameter: absent, or a non-negative Go duration.
func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errs.BadRequest(codeInvalidWait,
			"Query parameter \"wait\" must be a duration such as 60s, not %s.", quote(s))
	}
	return d, nil
}

// validateVersion checks a version number asked for in a rollback.
func validateVersion(v *int) (int, error) {
	if v == nil {
		return 0, errs.BadRequest(codeInvalidVersion, "Field \"version\" is required.")
	}
	if *v < 1 {
		return 0, errs.BadRequest(codeInvalidVersion, "Field \"version\" must be a version number of 1 or more.")
	}
	return *v, nil
}

// quote quotes a user-supplied string for a message, shortened when long.
func quote(s string) string {
	if utf8.RuneCountInString(s) > maxQuoted {
		r := []rune(s)
		return strconv.Quote(string(r[:maxQuoted])) + "…"
	}
	return strconv.Quote(s)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
