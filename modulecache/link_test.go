package modulecache

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wharfhq/wharf/npmspec"
)

func TestPlan(t *testing.T) {
	const m = "/modules"
	plain := func(name, v string) string {
		return m + "/" + npmspec.PathName(name) + "/" + v + "/node_modules/" + name
	}
	inst := func(links map[string]string, name string) bool {
		return strings.HasPrefix(links[name], m+"/.peers/") && strings.HasSuffix(links[name], "/node_modules/"+name)
	}
	type refs = []npmspec.Ref
	for _, tc := range []struct {
		name      string
		refs      refs
		peers     map[string][]string
		instances int
		check     func(t *testing.T, p linkPlan)
	}{
		{"no peers", refs{ref("ms", "2.1.3"), ref("debug", "4.3.4")}, nil, 0, func(t *testing.T, p linkPlan) {
			if p.Links["ms"] != plain("ms", "2.1.3") || p.Links["debug"] != plain("debug", "4.3.4") {
				t.Fatalf("%v", p.Links)
			}
		}},
		{"plugin alone keeps its own host", refs{ref("ajv-keywords", "5.1.0")}, map[string][]string{"ajv-keywords": {"ajv"}}, 0, func(t *testing.T, p linkPlan) {
			if p.Links["ajv-keywords"] != plain("ajv-keywords", "5.1.0") {
				t.Fatalf("%v", p.Links)
			}
		}},
		{"plugin and host", refs{ref("ajv", "8.12.0"), ref("ajv-keywords", "5.1.0")}, map[string][]string{"ajv-keywords": {"ajv"}}, 1, func(t *testing.T, p linkPlan) {
			if p.Links["ajv"] != plain("ajv", "8.12.0") || !inst(p.Links, "ajv-keywords") {
				t.Fatalf("%v", p.Links)
			}
			if p.Instances[0].Peers["ajv"] != plain("ajv", "8.12.0") || p.Instances[0].Module != ref("ajv-keywords", "5.1.0") {
				t.Fatalf("%+v", p.Instances[0])
			}
		}},
		{"a module peering on itself", refs{ref("a", "1.0.0")}, map[string][]string{"a": {"a"}}, 0, nil},
		{"peer declared elsewhere in the closure only", refs{ref("p", "1.0.0"), ref("h", "1.0.0")}, map[string][]string{"p": {"other"}}, 0, nil},
		{"two plugins of one host", refs{ref("h", "1.0.0"), ref("p1", "1.0.0"), ref("p2", "1.0.0")},
			map[string][]string{"p1": {"h"}, "p2": {"h"}}, 2, func(t *testing.T, p linkPlan) {
				if p.Instances[0].Key == p.Instances[1].Key {
					t.Fatal("two plugins share an instance")
				}
			}},
		{"a plugin of a plugin links to the plugin's instance", refs{ref("h", "1.0.0"), ref("p", "1.0.0"), ref("pp", "1.0.0")},
			map[string][]string{"p": {"h"}, "pp": {"p", "h"}}, 2, func(t *testing.T, p linkPlan) {
				for _, in := range p.Instances {
					if in.Module.Name == "pp" && (in.Peers["p"] != p.Links["p"] || in.Peers["h"] != p.Links["h"]) {
						t.Fatalf("pp's peers %v, function's links %v", in.Peers, p.Links)
					}
				}
			}},
		{"a cycle is cut", refs{ref("a", "1.0.0"), ref("b", "1.0.0")}, map[string][]string{"a": {"b"}, "b": {"a"}}, 2, func(t *testing.T, p linkPlan) {
			if !inst(p.Links, "a") || !inst(p.Links, "b") {
				t.Fatalf("%v", p.Links)
			}
		}},
		{"scoped names", refs{ref("@s/host", "1.0.0"), ref("@s/plugin", "2.0.0")}, map[string][]string{"@s/plugin": {"@s/host"}}, 1, func(t *testing.T, p linkPlan) {
			if p.Links["@s/host"] != "/modules/@s+host/1.0.0/node_modules/@s/host" || !inst(p.Links, "@s/plugin") ||
				!strings.Contains(p.Links["@s/plugin"], "/.peers/@s+plugin@2.0.0-") {
				t.Fatalf("%v", p.Links)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := plan(m, tc.refs, tc.peers)
			if len(p.Links) != len(tc.refs) || len(p.Instances) != tc.instances {
				t.Fatalf("plan: %d links, %d instances (%+v); want %d, %d", len(p.Links), len(p.Instances), p, len(tc.refs), tc.instances)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
			// Deterministic: the same input, the same plan.
			if again := plan(m, tc.refs, tc.peers); len(again.Instances) != len(p.Instances) ||
				(len(p.Instances) > 0 && again.Instances[0].Key != p.Instances[0].Key) {
				t.Fatal("plan is not deterministic")
			}
		})
	}
}

// Invariant: with a plugin and its host declared, Node (the host's real node
// binary, resolving as in a container) gives the function and the plugin one
// instance of the host; the plugin's other dependencies still resolve from
// its closure; the instance's files are hard links, not copies.
func TestLinkPeerInstanceWithNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on this host")
	}
	src := newSource()
	host := ref("host", "1.0.0")
	plugin := ref("plugin", "2.0.0")
	src.add(t, host, map[string]string{"host/package.json": `{"name":"host","version":"1.0.0"}`,
		"host/index.js": `module.exports = {id: Symbol('host 1.0.0'), plugins: []}`})
	src.add(t, plugin, map[string]string{
		"plugin/package.json": `{"name":"plugin","peerDependencies":{"host":"^1"},"dependencies":{"util-dep":"1"}}`,
		"plugin/index.js":     `const h = require('host'); h.plugins.push('plugin'); module.exports = {host: h, util: require('util-dep')}`,
		// npm installed the peer into the plugin's closure (another copy), and a nested one too.
		"host/package.json":                     `{"name":"host","version":"1.0.1"}`,
		"host/index.js":                         `module.exports = {id: Symbol('closure copy'), plugins: []}`,
		"plugin/node_modules/host/index.js":     `module.exports = {id: Symbol('nested copy'), plugins: []}`,
		"plugin/node_modules/host/package.json": `{"name":"host"}`,
		"util-dep/package.json":                 `{"name":"util-dep"}`,
		"util-dep/index.js":                     `module.exports = 'util from the plugin closure'`,
	})
	root := t.TempDir()
	c := newCache(t, root, src, root) // the host sees the links' targets as a container would
	links, err := c.Link(t.Context(), map[string]string{"host": "1.0.0", "plugin": "2.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	fn := filepath.Join(t.TempDir(), "fn")
	for name, target := range links {
		if err := os.MkdirAll(filepath.Join(fn, "node_modules"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(fn, "node_modules", name)); err != nil {
			t.Fatal(err)
		}
	}
	code := `const h = require('host'); const p = require('plugin');
console.log(JSON.stringify({same: p.host === h, plugins: h.plugins, id: String(h.id), util: p.util}))`
	if err := os.WriteFile(filepath.Join(fn, "fn.js"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, filepath.Join(fn, "fn.js")).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	want := `{"same":true,"plugins":["plugin"],"id":"Symbol(host 1.0.0)","util":"util from the plugin closure"}`
	if strings.TrimSpace(string(out)) != want {
		t.Fatalf("node says %s\nwant      %s", out, want)
	}
	// Hard links: the instance's plugin file is the closure's inode.
	a, _ := os.Stat(filepath.Join(root, "plugin", "2.0.0", "node_modules", "plugin", "index.js"))
	instDir := strings.TrimSuffix(links["plugin"], "/node_modules/plugin")
	b, err := os.Stat(filepath.Join(instDir, "node_modules", "plugin", "index.js"))
	if err != nil || a.Sys().(*syscall.Stat_t).Ino != b.Sys().(*syscall.Stat_t).Ino {
		t.Fatalf("instance file is not a hard link (%v)", err)
	}
	// Asking again is a map lookup: no new instance, same answer.
	again, err := c.Link(t.Context(), map[string]string{"plugin": "2.0.0", "host": "1.0.0"})
	if err != nil || again["plugin"] != links["plugin"] {
		t.Fatalf("second Link: %v %v", again, err)
	}
	// Without the host declared, the plugin uses its own closure (npm installed the peer).
	alone, err := c.Link(t.Context(), map[string]string{"plugin": "2.0.0"})
	if err != nil || alone["plugin"] != filepath.Join(root, "plugin", "2.0.0", "node_modules", "plugin") {
		t.Fatalf("plugin alone: %v %v", alone, err)
	}
}
