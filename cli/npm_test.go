package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

func loadPackument(t testing.TB, file string) *packument {
	t.Helper()
	b, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var p packument
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestClassifySpec(t *testing.T) {
	cases := []struct {
		spec string
		want specKind
		bad  bool
	}{
		{"2.1.3", specExact, false}, {"=2.1.3", specExact, false}, {"v2.1.3", specExact, false},
		{"1.0.0-beta.2+build.7", specExact, false},
		{"^2.1.0", specRange, false}, {"~1.2", specRange, false}, {">=1.2.7 <1.3.0", specRange, false},
		{"1.x", specRange, false}, {"*", specRange, false}, {"", specRange, false}, {"x", specRange, false},
		{"1.2.3 - 2.3.4", specRange, false}, {"^1.0.0 || ^2.0.0", specRange, false}, {"2", specRange, false},
		{"latest", specTag, false}, {"next", specTag, false}, {"beta", specTag, false},
		{"file:../lib", 0, true}, {"link:../lib", 0, true}, {"workspace:*", 0, true}, {"npm:other@1.0.0", 0, true},
		{"git+https://github.com/a/b.git", 0, true}, {"git://github.com/a/b", 0, true}, {"github:a/b", 0, true},
		{"https://example.com/x.tgz", 0, true}, {"user/repo", 0, true}, {"./local.tgz", 0, true},
		{"not a range!", 0, true}, {"@@@", 0, true},
	}
	for _, c := range cases {
		got, err := classifySpec("dep", c.spec)
		if c.bad {
			if err == nil {
				t.Errorf("%q accepted as %v", c.spec, got)
			} else if !strings.Contains(err.Error(), "dep") {
				t.Errorf("%q: error %q does not name the dependency", c.spec, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %v %v, want %v", c.spec, got, err, c.want)
		}
	}
}

func TestPickVersion(t *testing.T) {
	ms := loadPackument(t, "ms.json")
	lodash := loadPackument(t, "lodash.json")
	cases := []struct {
		name string
		p    *packument
		spec string
		want string
		err  string
	}{
		{"ms", ms, "^2.0.0", "2.1.3", ""},
		{"ms", ms, "~2.1.1", "2.1.3", ""},
		{"ms", ms, "^0.7.1", "0.7.3", ""},
		{"ms", ms, "0.7.x", "0.7.3", ""},
		{"ms", ms, "<2.1.2", "2.1.1", ""},
		{"ms", ms, ">=1.0.0 <2.1.0", "2.0.0", ""},
		{"ms", ms, "^1.0.0 || ^0.7.0", "1.0.0", ""},
		{"ms", ms, "*", "2.1.3", ""},
		{"ms", ms, "", "2.1.3", ""},
		{"ms", ms, "2.1.1", "2.1.1", ""},
		{"ms", ms, "v2.1.1", "2.1.1", ""},
		{"ms", ms, "latest", "2.1.3", ""},
		{"ms", ms, "beta", "3.0.0-canary.1", ""},
		// Prereleases only when the range names one of the same version.
		{"ms", ms, ">=2.1.0", "2.1.3", ""},
		{"ms", ms, ">2.1.3", "", `no version of ms matches ">2.1.3" (latest is 2.1.3)`},
		{"ms", ms, "^3.0.0-canary.0", "3.0.0-canary.1", ""},
		{"ms", ms, "^9.0.0", "", `no version of ms matches "^9.0.0" (latest is 2.1.3)`},
		{"ms", ms, "9.9.9", "", "package ms has no version 9.9.9 (latest is 2.1.3)"},
		{"ms", ms, "nightly", "", `package ms has no tag "nightly"`},
		// npm prefers the latest tag when it satisfies, and avoids deprecated versions.
		{"lodash", lodash, "^4.0.0", "4.17.21", ""},
		{"lodash", lodash, ">=4.17.21", "4.17.21", ""},
		{"lodash", lodash, ">4.17.21", "4.18.0", ""},
		{"lodash", lodash, "^3.0.0", "3.10.1", ""},
	}
	for _, c := range cases {
		kind, err := classifySpec(c.name, c.spec)
		if err != nil {
			t.Fatalf("%q: %v", c.spec, err)
		}
		got, err := pickVersion(c.name, c.spec, kind, c.p)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%s@%q: %q, %v; want error %q", c.name, c.spec, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s@%q: %q, %v; want %q", c.name, c.spec, got, err, c.want)
		}
	}
}

func TestSplitDep(t *testing.T) {
	cases := []struct{ arg, name, spec string }{
		{"ms@2.1.3", "ms", "2.1.3"}, {"ms", "ms", "latest"}, {"ms@", "ms", "latest"}, {"ms@^2", "ms", "^2"},
		{"@types/node@^20", "@types/node", "^20"}, {"@types/node", "@types/node", "latest"},
		{"a@b@1.0.0", "a@b", "1.0.0"},
	}
	for _, c := range cases {
		n, s, err := splitDep(c.arg)
		if err != nil || n != c.name || s != c.spec {
			t.Errorf("%q: %q %q %v, want %q %q", c.arg, n, s, err, c.name, c.spec)
		}
	}
	for _, bad := range []string{"", "@", "a b@1.0.0"} {
		if _, _, err := splitDep(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// fakeRegistry serves the testdata packuments the way the npm registry
// does (scoped names with an encoded slash), counting requests.
func fakeRegistry(t *testing.T) (*httptest.Server, func() map[string]int) {
	t.Helper()
	var mu sync.Mutex
	hits := map[string]int{}
	files := map[string]string{"/ms": "ms.json", "/lodash": "lodash.json", "/@types%2fnode": "types-node.json"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.EscapedPath()]++
		mu.Unlock()
		if !strings.Contains(r.Header.Get("Accept"), "application/vnd.npm.install-v1+json") {
			t.Errorf("registry asked without the abbreviated Accept: %q", r.Header.Get("Accept"))
		}
		switch r.URL.EscapedPath() {
		case "/broken":
			w.Write([]byte("{not json"))
			return
		case "/flaky":
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		f, ok := files[r.URL.EscapedPath()]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"Not found"}`))
			return
		}
		b, _ := os.ReadFile("testdata/" + f)
		w.Header().Set("Content-Type", "application/vnd.npm.install-v1+json")
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range hits {
			out[k] = v
		}
		return out
	}
}

func TestRegistryResolve(t *testing.T) {
	srv, hits := fakeRegistry(t)
	reg := newRegistry(srv.URL+"/", srv.Client())
	ctx := context.Background()
	cases := []struct{ name, spec, want, err string }{
		{"ms", "^2.0.0", "2.1.3", ""},
		{"ms", "^0.7.0", "0.7.3", ""},
		{"@types/node", "^20.0.0", "20.11.5", ""},
		{"nope", "^1.0.0", "", "package nope does not exist in the npm registry at " + srv.URL},
		{"broken", "^1.0.0", "", "the npm registry's document of broken is not valid JSON"},
		{"flaky", "^1.0.0", "", "the npm registry at " + srv.URL + " answered 502 for package flaky"},
		{"ms", "file:../x", "", "dependency ms is \"file:../x\", which is not a registry version"},
	}
	for _, c := range cases {
		got, err := reg.Resolve(ctx, c.name, c.spec)
		if c.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), c.err) {
				t.Errorf("%s@%s: %q %v, want error %q", c.name, c.spec, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s@%s: %q %v, want %q", c.name, c.spec, got, err, c.want)
		}
	}
	if h := hits(); h["/ms"] != 1 || h["/@types%2fnode"] != 1 {
		t.Fatalf("registry hits %v: want one request per package", h)
	}
	unreachable := newRegistry("http://127.0.0.1:1", srv.Client())
	if _, err := unreachable.Resolve(ctx, "ms", "^2"); err == nil || !strings.Contains(err.Error(), "cannot reach the npm registry") {
		t.Fatalf("unreachable registry: %v", err)
	}
}
