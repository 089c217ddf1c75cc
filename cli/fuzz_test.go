package cli

import (
	"testing"

	"github.com/Masterminds/semver/v3"
)

// A .env file of any content parses or fails with a line number; what it
// gives has valid keys only.
func FuzzParseDotenv(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		m, err := parseDotenv(text)
		if err != nil {
			return
		}
		for k := range m {
			if !envKeyRE.MatchString(k) {
				t.Fatalf("key %q", k)
			}
		}
	})
}

// Any dependency spec is classified without panicking, and a version picked
// for it exists in the packument and satisfies the range.
func FuzzResolveSpec(f *testing.F) {
	p := loadPackument(f, "ms.json")
	f.Fuzz(func(t *testing.T, spec string) {
		kind, err := classifySpec("ms", spec)
		if err != nil {
			return
		}
		v, err := pickVersion("ms", spec, kind, p)
		if err != nil {
			return
		}
		if _, ok := p.Versions[v]; !ok {
			t.Fatalf("%q picked %q, not a version of ms", spec, v)
		}
		if kind == specRange {
			s := spec
			if s == "" {
				s = "*"
			}
			con, err := semver.NewConstraint(s)
			if err == nil && !con.Check(semver.MustParse(v)) {
				t.Fatalf("%q picked %q, which does not satisfy it", spec, v)
			}
		}
	})
}
