package npmspec

import (
	"slices"
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ref
		ok   bool
	}{
		{"ms@2.1.3", Ref{"ms", "2.1.3"}, true},
		{"@types/node@20.1.0", Ref{"@types/node", "20.1.0"}, true},
		{"lodash@4.17.21+build.1", Ref{"lodash", "4.17.21+build.1"}, true},
		{"ms", Ref{}, false},
		{"@types/node", Ref{}, false},
		{"@2.1.3", Ref{}, false},
		{"ms@", Ref{}, false},
		{"ms@^2.1.3", Ref{}, false},
		{"ms@latest", Ref{}, false},
		{"../x@1.0.0", Ref{}, false},
		{"@scope/..@1.0.0", Ref{}, false},
		{"ms@1.0.0/../..", Ref{}, false},
		{"Ms@1.0.0", Ref{}, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ParseRef(tc.in)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("ParseRef(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
			if ok && got.String() != tc.in {
				t.Fatalf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

// Every valid name maps to one path component that is neither "." nor ".."
// and contains no separator, and distinct names map to distinct components.
func TestPathName(t *testing.T) {
	names := []string{"ms", "@types/node", "@types+node", "types+node", "@a/b", "@a-b/c", "a.b", "@scope/..", ".."}
	seen := map[string]string{}
	for _, n := range names {
		if !ValidName(n) {
			continue
		}
		p := PathName(n)
		if p == "." || p == ".." || strings.ContainsAny(p, "/\\\x00") {
			t.Fatalf("PathName(%q) = %q is not one safe component", n, p)
		}
		if other, dup := seen[p]; dup {
			t.Fatalf("PathName(%q) = PathName(%q) = %q", n, other, p)
		}
		seen[p] = n
	}
	if PathName("@types/node") != "@types+node" || PathName("ms") != "ms" {
		t.Fatal("PathName encoding changed: unpacked module stores would be orphaned")
	}
}

func TestRefsSorted(t *testing.T) {
	got := Refs(map[string]string{"ms": "2.1.3", "@a/b": "1.0.0", "debug": "4.3.4"})
	want := []Ref{{"@a/b", "1.0.0"}, {"debug", "4.3.4"}, {"ms", "2.1.3"}}
	if !slices.Equal(got, want) {
		t.Fatalf("Refs = %v, want %v", got, want)
	}
}
