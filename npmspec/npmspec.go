// Package npmspec owns the grammar of what a function may depend on: npm
// package names (scoped too) and exact semantic versions, and the module
// reference name@version that the builder, the store and each node's module
// cache all key on.
package npmspec

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Limits of the grammar.
const (
	MaxNameLen    = 214
	MaxVersionLen = 256
	maxSemverNum  = 1<<53 - 1 // npm's Number.MAX_SAFE_INTEGER
)

var (
	// npm package names (validate-npm-package-name, rules for new packages):
	// lowercase and URL-safe, no leading '.' or '_', none of ~'!()* in the
	// package part. Stricter than npm in one way: the package part may not
	// start with '-' either, so a name can never be read as a command-line flag.
	scopeRE = regexp.MustCompile(`^[a-z0-9~-][a-z0-9._~-]*$`)
	partRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

	// Exact semantic versions (semver.org 2.0.0): MAJOR.MINOR.PATCH[-prerelease][+build].
	semverRE = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
		`(?:-(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?` +
		`(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$`)
)

// ValidName tells whether name is a valid npm package name for a new package.
// A valid name is also a safe relative path of one ("ms") or two
// ("@scope/pkg") components, none of them "." or "..".
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen || name != strings.TrimSpace(name) {
		return false
	}
	part := name
	if strings.HasPrefix(name, "@") {
		scope, rest, ok := strings.Cut(name[1:], "/")
		if !ok || !scopeRE.MatchString(scope) {
			return false
		}
		part = rest
	}
	switch part {
	case "node_modules", "favicon.ico":
		return false
	}
	return partRE.MatchString(part)
}

// ValidExactVersion tells whether v is one exact semantic version
// MAJOR.MINOR.PATCH[-prerelease][+build], as npm accepts it. A valid version
// starts with a digit and has no '/', so it is a safe path component.
func ValidExactVersion(v string) bool {
	if len(v) > MaxVersionLen {
		return false
	}
	m := semverRE.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	for _, n := range m[1:4] {
		if x, err := strconv.ParseUint(n, 10, 64); err != nil || x > maxSemverNum {
			return false
		}
	}
	return true
}

// Ref names one published module version, e.g. lodash@4.17.21.
type Ref struct {
	Name    string
	Version string
}

// String is "name@version", the module's key everywhere.
func (r Ref) String() string { return r.Name + "@" + r.Version }

// Valid tells whether both parts are valid.
func (r Ref) Valid() bool { return ValidName(r.Name) && ValidExactVersion(r.Version) }

// ParseRef splits "name@version" (the name may itself start with '@') and
// validates both parts.
func ParseRef(s string) (Ref, bool) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 {
		return Ref{}, false
	}
	r := Ref{Name: s[:i], Version: s[i+1:]}
	return r, r.Valid()
}

// PathName is a name as one path component: "@scope/pkg" becomes
// "@scope+pkg" ('+' never occurs in a valid name, so this is reversible), so
// every module's directory is exactly two levels below the store's root.
func PathName(name string) string { return strings.Replace(name, "/", "+", 1) }

// Refs turns a dependencies map into refs sorted by name.
func Refs(deps map[string]string) []Ref {
	out := make([]Ref, 0, len(deps))
	for n, v := range deps {
		out = append(out, Ref{Name: n, Version: v})
	}
	slices.SortFunc(out, func(a, b Ref) int { return strings.Compare(a.Name, b.Name) })
	return out
}
