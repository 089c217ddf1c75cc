package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wharfhq/wharf/compiler"
)

func withDependencies(d map[string]any) cfgOption {
	return func(c map[string]any) { c["dependencies"] = d }
}

// linkModule puts a package in a stand-in module store and links dir/node_modules/<link> to it, as the handler
// does for a dependency and for its "name@version" alias.
func linkModule(t *testing.T, store, dir, name, version, index string, links ...string) {
	t.Helper()
	pkg := filepath.Join(store, strings.ReplaceAll(name, "/", "+"), version, "node_modules", filepath.FromSlash(name))
	writeFile(t, filepath.Join(pkg, "package.json"), `{"name":"`+name+`","version":"`+version+`"}`)
	writeFile(t, filepath.Join(pkg, "index.js"), index)
	for _, l := range links {
		p := filepath.Join(dir, "node_modules", filepath.FromSlash(l))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(pkg, p); err != nil {
			t.Fatal(err)
		}
	}
}

// Invariant: require('name@version') loads the declared version, the very instance require('name') gives (scoped
// names and subpaths too); any other version, or an undeclared name, fails with a sentence saying what is declared.
func TestVersionedRequire(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	store := filepath.Join(filepath.Dir(r.appDir), "modules")
	deps := withDependencies(map[string]any{"lodash": "4.17.21", "@scope/pkg": "1.0.0"})

	dir := r.deploy(t, "pinned", 1, `var a = require('lodash@4.17.21'), b = require('lodash');
var s = require('@scope/pkg@1.0.0');
module.exports = function (cb) {
	cb(null, { same: a === b, v: a.v, scoped: s, pkg: require('lodash@4.17.21/package.json').version });
};`, deps)
	linkModule(t, store, dir, "lodash", "4.17.21", `module.exports = { v: 4 };`, "lodash", "lodash@4.17.21")
	linkModule(t, store, dir, "@scope/pkg", "1.0.0", `module.exports = 'scoped 1.0.0';`, "@scope/pkg", "@scope/pkg@1.0.0")
	got := r.do(t, call{fn: "pinned"})
	got.expect(t, 200, "webtask")
	equalJSON(t, got.body, `{"same":true,"v":4,"scoped":"scoped 1.0.0","pkg":"4.17.21"}`)

	for _, c := range []struct{ name, id, want string }{
		{"other", "lodash@3.10.1", "Cannot find module 'lodash@3.10.1': the function declares lodash@4.17.21, not 3.10.1"},
		{"undeclared", "left-pad@1.3.0", "Cannot find module 'left-pad@1.3.0': the function does not declare left-pad as a dependency"},
		{"scoped", "@scope/pkg@2.0.0/sub", "the function declares @scope/pkg@1.0.0, not 2.0.0"},
	} {
		// At request time too, where code often requires lazily.
		dir := r.deploy(t, c.name, 1, `module.exports = function (cb) {
	try { require('`+c.id+`'); cb(null, 'loaded'); } catch (e) { cb(null, { code: e.code, message: e.message }); }
};`, deps)
		linkModule(t, store, dir, "lodash", "4.17.21", `module.exports = {};`, "lodash", "lodash@4.17.21")
		got := r.do(t, call{fn: c.name})
		got.expect(t, 200, "webtask")
		obj := got.object(t)
		if msg, _ := obj["message"].(string); obj["code"] != "MODULE_NOT_FOUND" || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %v, want %q", c.id, obj, c.want)
		}
	}

	// Unversioned misses keep Node's own error.
	r.deploy(t, "plain", 1, `require('nowhere'); module.exports = function (cb) { cb() };`)
	got = r.do(t, call{fn: "plain"})
	got.expect(t, 400, "compiler")
	if msg, _ := got.object(t)["error"].(string); !strings.Contains(msg, "Cannot find module 'nowhere'") {
		t.Errorf("error = %q", msg)
	}
}

// Invariant: a module that exports {__esModule: true, default: fn} (ES module code compiled to CommonJS, by Wharf or
// Babel) runs its default export; an __esModule object without a function is still refused.
func TestDefaultExportIsTheFunction(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "babel", 1, `Object.defineProperty(exports, '__esModule', { value: true });
exports.default = function (ctx, cb) { cb(null, { form: 2, q: ctx.query.q }); };`)
	got := r.do(t, call{fn: "babel", path: "?q=1"})
	got.expect(t, 200, "webtask")
	equalJSON(t, got.body, `{"form":2,"q":"1"}`)

	r.deploy(t, "nodefault", 1, `exports.__esModule = true; exports.default = 42;`)
	got = r.do(t, call{fn: "nodefault"})
	got.expect(t, 400, "compiler")
	equalJSON(t, got.body, `{"code":400,"error":"`+msgNotFunction+`"}`)

	// Without the marker, an object with a default function is not a function either (webtask's rule).
	r.deploy(t, "plainobject", 1, `module.exports = { default: function (cb) { cb() } };`)
	r.do(t, call{fn: "plainobject"}).expect(t, 400, "compiler")
}

// Invariant: 'use latest' code as the deploy compiles it (package compiler) runs in the runner: ES imports of
// built-ins and of dependencies, export default, modern syntax, and legal comments read back through toString.
func TestUseLatestCompiledCodeRuns(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	code := `'use latest';
import { format } from 'util';
import * as path from 'path';
import dep, { named } from 'dep';
function view() {/*! <h1><%= name %></h1> */}
const template = (s => s.slice(s.indexOf('<h1>'), s.indexOf('</h1>') + 5))(view.toString());
export default async (ctx, cb) => {
	const { name = 'world', ...rest } = ctx.query;
	cb(null, { msg: format('%s, %s', dep(), named), base: path.basename('/a/b.js'), template, name, rest, opt: ctx.body?.x ?? 'none' });
};
`
	compiled, err := compiler.Compile(code)
	if err != nil || compiled == "" {
		t.Fatalf("Compile = %q, %v", compiled, err)
	}
	dir := r.deploy(t, "latest", 1, compiled)
	linkModule(t, filepath.Join(filepath.Dir(r.appDir), "modules"), dir, "dep", "1.0.0",
		`module.exports = function () { return 'hello' }; module.exports.named = 'named';`, "dep")
	got := r.do(t, call{fn: "latest", path: "?name=wharf&x=1"})
	got.expect(t, 200, "webtask")
	equalJSON(t, got.body, `{"msg":"hello, named","base":"b.js","template":"<h1><%= name %></h1>","name":"wharf","rest":{"x":"1"},"opt":"none"}`)
}
