package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// DefaultRegistry is where dependency ranges are resolved unless
// --registry, WHARF_NPM_REGISTRY or npm_config_registry says otherwise.
const DefaultRegistry = "https://registry.npmjs.org"

// maxPackument bounds a registry answer (abbreviated metadata of the largest
// packages is a few MB).
const maxPackument = 64 << 20

// packument is the part of a registry document resolution needs.
type packument struct {
	Versions map[string]struct {
		Deprecated any `json:"deprecated"` // a message, or false
	} `json:"versions"`
	DistTags map[string]string `json:"dist-tags"`
}

// registry resolves npm specs against one registry, asking once per package.
type registry struct {
	base  string
	http  *http.Client
	cache map[string]*packument
}

func newRegistry(base string, hc *http.Client) *registry {
	return &registry{base: strings.TrimRight(base, "/"), http: hc, cache: map[string]*packument{}}
}

// Resolve turns a dependency spec (exact version, range, or dist-tag) into
// the exact version npm would install.
func (r *registry) Resolve(ctx context.Context, name, spec string) (string, error) {
	kind, err := classifySpec(name, spec)
	if err != nil {
		return "", err
	}
	p, err := r.packument(ctx, name)
	if err != nil {
		return "", err
	}
	return pickVersion(name, spec, kind, p)
}

func (r *registry) packument(ctx context.Context, name string) (*packument, error) {
	if p, ok := r.cache[name]; ok {
		return p, nil
	}
	target := r.base + "/" + escapePackage(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	// The abbreviated document: versions and dist-tags, a fraction of the size.
	req.Header.Set("Accept", "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8")
	resp, err := r.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach the npm registry at %s: %w", r.base, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("package %s does not exist in the npm registry at %s", name, r.base)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("the npm registry at %s answered %d for package %s", r.base, resp.StatusCode, name)
	}
	var p packument
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPackument)).Decode(&p); err != nil {
		return nil, fmt.Errorf("the npm registry's document of %s is not valid JSON: %w", name, err)
	}
	r.cache[name] = &p
	return &p, nil
}

// escapePackage escapes a package name for a registry URL: a scoped
// name's slash is encoded ("@scope%2fname"), as npm does.
func escapePackage(name string) string {
	if scope, pkg, ok := strings.Cut(name, "/"); ok && strings.HasPrefix(name, "@") {
		return "@" + url.PathEscape(scope[1:]) + "%2f" + url.PathEscape(pkg)
	}
	return url.PathEscape(name)
}

type specKind int

const (
	specExact specKind = iota
	specRange
	specTag
)

var (
	exactRE = regexp.MustCompile(`^[=v]?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
		`(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	tagRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*$`)
	// prereleaseRE finds the versions with a prerelease written in a range.
	prereleaseRE = regexp.MustCompile(`(\d+)\.(\d+)\.(\d+)-[0-9A-Za-z.-]+`)
	// notRegistry are the specs npm installs from elsewhere than the registry.
	notRegistry = []string{"file:", "link:", "workspace:", "npm:", "git:", "git+", "github:", "gitlab:", "bitbucket:", "gist:", "http:", "https:"}
)

// classifySpec tells what a dependency spec of package.json is; specs that
// do not name registry versions (URLs, git, files, aliases) are refused.
func classifySpec(name, spec string) (specKind, error) {
	s := strings.TrimSpace(spec)
	lower := strings.ToLower(s)
	for _, p := range notRegistry {
		if strings.HasPrefix(lower, p) {
			return 0, fmt.Errorf("dependency %s is %q, which is not a registry version; Wharf installs versions from the npm registry only", name, spec)
		}
	}
	if strings.Contains(s, "/") || strings.HasSuffix(lower, ".tgz") || strings.HasSuffix(lower, ".tar.gz") {
		return 0, fmt.Errorf("dependency %s is %q, which is not a registry version; Wharf installs versions from the npm registry only", name, spec)
	}
	if exactRE.MatchString(s) {
		return specExact, nil
	}
	if s == "" || s == "*" || s == "x" || s == "X" {
		return specRange, nil
	}
	if _, err := semver.NewConstraint(s); err == nil {
		return specRange, nil
	}
	if tagRE.MatchString(s) {
		return specTag, nil
	}
	return 0, fmt.Errorf("dependency %s has %q, which is neither a version, a range nor a tag", name, spec)
}

// pickVersion chooses the version npm would: for a tag, the version it
// points to; for a range, the "latest" tag when it satisfies the range,
// else the highest satisfying version that is not deprecated, else the
// highest satisfying one.
func pickVersion(name, spec string, kind specKind, p *packument) (string, error) {
	s := strings.TrimSpace(spec)
	if kind == specExact {
		v := strings.TrimPrefix(strings.TrimPrefix(s, "="), "v")
		if _, ok := p.Versions[v]; !ok {
			return "", fmt.Errorf("package %s has no version %s%s", name, v, latestHint(p))
		}
		return v, nil
	}
	if kind == specTag {
		v, ok := p.DistTags[s]
		if !ok {
			return "", fmt.Errorf("package %s has no tag %q", name, s)
		}
		return v, nil
	}
	if s == "" {
		s = "*"
	}
	con, err := semver.NewConstraint(s)
	if err != nil {
		return "", fmt.Errorf("dependency %s has %q, which is not a version range", name, spec)
	}
	var all, live []*semver.Version
	for raw, meta := range p.Versions {
		v, err := semver.StrictNewVersion(raw)
		if err != nil || !satisfies(con, s, v) {
			continue
		}
		all = append(all, v)
		if d, ok := meta.Deprecated.(string); !ok || d == "" {
			live = append(live, v)
		}
	}
	if len(all) == 0 {
		return "", fmt.Errorf("no version of %s matches %q%s", name, spec, latestHint(p))
	}
	if latest, err := semver.StrictNewVersion(p.DistTags["latest"]); err == nil && satisfies(con, s, latest) {
		if _, ok := p.Versions[latest.Original()]; ok {
			return latest.Original(), nil
		}
	}
	pool := live
	if len(pool) == 0 {
		pool = all
	}
	return slices.MaxFunc(pool, func(a, b *semver.Version) int { return a.Compare(b) }).Original(), nil
}

func latestHint(p *packument) string {
	if l := p.DistTags["latest"]; l != "" {
		return " (latest is " + l + ")"
	}
	return ""
}

// satisfies is the range check with npm's rule for prereleases: a version
// with a prerelease matches only when the range names a prerelease of the
// same major.minor.patch.
func satisfies(con *semver.Constraints, rng string, v *semver.Version) bool {
	if !con.Check(v) {
		return false
	}
	if v.Prerelease() == "" {
		return true
	}
	for _, m := range prereleaseRE.FindAllStringSubmatch(rng, -1) {
		if m[1] == fmt.Sprint(v.Major()) && m[2] == fmt.Sprint(v.Minor()) && m[3] == fmt.Sprint(v.Patch()) {
			return true
		}
	}
	return false
}

// splitDep splits a --dep argument, name@spec (the spec optional; a scope's
// leading @ is part of the name).
func splitDep(arg string) (name, spec string, err error) {
	i := strings.LastIndex(arg, "@")
	if i <= 0 {
		name, spec = arg, "latest"
	} else {
		name, spec = arg[:i], arg[i+1:]
	}
	scope, pkg, scoped := strings.Cut(strings.TrimPrefix(name, "@"), "/")
	if name == "" || strings.ContainsAny(name, " \t") || (strings.HasPrefix(name, "@") && (!scoped || scope == "" || pkg == "")) {
		return "", "", fmt.Errorf("--dep %q is not name@version", arg)
	}
	if spec == "" {
		spec = "latest"
	}
	return name, spec, nil
}
