package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/integration/wharftest"
)

// The tests in this file build real modules from the real npm registry.

// usesDeps answers with values computed by ms, lodash and debug, the
// versions each resolves to (debug brings its own ms), and what happens when
// the function tries to write into its node_modules or a module's directory.
const usesDeps = `const ms = require('ms');
const _ = require('lodash');
const debug = require('debug');
const fs = require('fs');
const path = require('path');
const Module = require('module');
function tryWrite(fn) { try { fn(); return 'written' } catch (e) { return e.code } }
module.exports = function (cb) {
	const fromDebug = Module.createRequire(require.resolve('debug'));
	cb(null, {
		ms: ms('2h'), chunk: _.chunk([1, 2, 3, 4, 5], 2), debugType: typeof debug('x'),
		msVersion: require('ms/package.json').version,
		debugsMs: fromDebug('ms/package.json').version,
		realpath: fs.realpathSync(require.resolve('lodash')),
		writeModule: tryWrite(() => fs.writeFileSync(path.join(path.dirname(require.resolve('ms')), 'x.js'), 'x')),
		writeLinks: tryWrite(() => fs.writeFileSync(path.join(__dirname, 'node_modules', 'evil.js'), 'x')),
		replaceLink: tryWrite(() => fs.unlinkSync(path.join(__dirname, 'node_modules', 'ms'))),
	});
};`

var threeDeps = map[string]string{"ms": "2.1.3", "lodash": "4.17.21", "debug": "4.3.4"}

type fnStatus struct {
	Name    string
	Version int
	Status  string
	Modules []struct{ Name, Version, Status, Error string }
}

func putFn(t *testing.T, n *wharftest.Node, token, tenant, name, query string, body map[string]any) (int, fnStatus) {
	t.Helper()
	r := do(t, n, "PUT", "/api/v1/tenants/"+tenant+"/functions/"+name+query, token, body)
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("PUT %s/%s: %d %s", tenant, name, r.Status, r.Body)
	}
	var st fnStatus
	if err := r.JSON(&st); err != nil {
		t.Fatal(err)
	}
	return r.Status, st
}

type moduleInfo struct {
	Name, Version, Status, Error, Log, SHA256 string
	Attempts                                  int
	BuiltBy                                   string `json:"built_by"`
}

func getModule(t *testing.T, n *wharftest.Node, token, ref string) moduleInfo {
	t.Helper()
	r := do(t, n, "GET", "/api/v1/modules/"+ref, token, nil)
	expect(t, r, http.StatusOK)
	var m moduleInfo
	if err := r.JSON(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Invariant: a function using ms, lodash and debug (which brings its own
// ms) gets right answers from each, each resolving to its own version from
// the read-only module store; writes into its node_modules or into a module
// fail with EROFS; a second tenant with the same dependencies is ready at
// once and triggers no build; rolling back to a version with dependencies works.
func TestModulesEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	acme := createTenant(t, n, "acme")
	_, st := putFn(t, n, acme, "acme", "deps", "?wait=180s", map[string]any{"code": usesDeps, "dependencies": threeDeps})
	if st.Status != "ready" || len(st.Modules) != 3 {
		t.Fatalf("PUT ?wait: %+v", st)
	}
	r := do(t, n, "GET", "/run/acme/deps", "", nil)
	expect(t, r, http.StatusOK)
	var out struct {
		MS                                   int
		Chunk                                [][]int
		DebugType, MSVersion, DebugsMS       string
		Realpath                             string
		WriteModule, WriteLinks, ReplaceLink string
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	if out.MS != 7_200_000 || len(out.Chunk) != 3 || out.Chunk[2][0] != 5 || out.DebugType != "function" {
		t.Fatalf("wrong answers: %s", r.Body)
	}
	if out.MSVersion != "2.1.3" || out.DebugsMS != "2.1.2" {
		t.Fatalf("function's ms %s (want 2.1.3), debug's ms %s (want its own 2.1.2)", out.MSVersion, out.DebugsMS)
	}
	if out.Realpath != "/modules/lodash/4.17.21/node_modules/lodash/lodash.js" {
		t.Fatalf("lodash resolved to %s", out.Realpath)
	}
	if out.WriteModule != "EROFS" || out.WriteLinks != "EROFS" || out.ReplaceLink != "EROFS" {
		t.Fatalf("writes into node_modules: %s", r.Body)
	}
	builds := strings.Count(n.Stderr(), "msg=building")
	if builds != 3 {
		t.Fatalf("%d builds for 3 modules", builds)
	}

	// A second tenant with the same dependencies: ready at once, no build.
	globex := createTenant(t, n, "globex")
	start := time.Now()
	code, st := putFn(t, n, globex, "globex", "deps", "", map[string]any{"code": usesDeps, "dependencies": threeDeps})
	if code != http.StatusCreated || st.Status != "ready" {
		t.Fatalf("second tenant's PUT: %d %+v", code, st)
	}
	t.Logf("second tenant's PUT with 3 built modules: %v", time.Since(start))
	r = do(t, n, "GET", "/run/globex/deps", "", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"msVersion":"2.1.3"`) {
		t.Fatalf("second tenant: %s", r.Body)
	}
	for _, ref := range []string{"ms@2.1.3", "lodash@4.17.21", "debug@4.3.4"} {
		if m := getModule(t, n, globex, ref); m.Status != "ready" || m.Attempts != 1 || len(m.SHA256) != 64 {
			t.Fatalf("%s: %+v", ref, m)
		}
	}
	if got := strings.Count(n.Stderr(), "msg=building"); got != builds {
		t.Fatalf("the second tenant triggered %d builds", got-builds)
	}

	// Rollback to the version with dependencies.
	deploy(t, n, acme, "acme", "deps", `module.exports = cb => cb(null, {plain: true})`, nil)
	expect(t, do(t, n, "GET", "/run/acme/deps", "", nil), http.StatusOK)
	r = do(t, n, "POST", "/api/v1/tenants/acme/functions/deps/rollback?wait=60s", acme, map[string]int{"version": 1})
	expect(t, r, http.StatusOK)
	_ = r.JSON(&st)
	if st.Version != 3 || st.Status != "ready" || len(st.Modules) != 3 {
		t.Fatalf("rollback: %s", r.Body)
	}
	r = do(t, n, "GET", "/run/acme/deps", "", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"debugsMs":"2.1.2"`) {
		t.Fatalf("after rollback: %s", r.Body)
	}
	if got := strings.Count(n.Stderr(), "msg=building"); got != builds {
		t.Fatalf("the rollback triggered %d builds", got-builds)
	}
	// The node's metrics account for the builds and the module cache.
	if v := metric(t, n, "wharf_module_builds_total"); int(v) != builds {
		t.Fatalf("wharf_module_builds_total = %v, want %d", v, builds)
	}
	if metric(t, n, "wharf_module_unpacks_total") < 3 || metric(t, n, "wharf_module_cache_hits_total") < 1 {
		t.Fatal("module cache metrics missing")
	}
}

// Invariant: a package that does not exist ends failed with npm's error in
// its build log; invoking a function that needs it answers 503 with a clear
// message (never a crash in the container), and the node stays healthy.
func TestUnknownModuleFails(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	tok := createTenant(t, n, "acme")
	const missing = "wharf-no-such-package-9f3c1a7e"
	_, st := putFn(t, n, tok, "acme", "broken", "?wait=120s", map[string]any{
		"code": `module.exports = cb => cb(null, require('` + missing + `'))`, "dependencies": map[string]string{missing: "1.0.0"}})
	if st.Status != "failed" || len(st.Modules) != 1 || st.Modules[0].Status != "failed" || !strings.Contains(st.Modules[0].Error, "E404") {
		t.Fatalf("PUT: %+v", st)
	}
	m := getModule(t, n, tok, missing+"@1.0.0")
	if m.Status != "failed" || m.Attempts != 1 || !strings.Contains(m.Log, "npm error 404") || !strings.Contains(m.Log, missing) {
		t.Fatalf("module: %+v", m)
	}
	r := do(t, n, "GET", "/run/acme/broken", "", nil)
	expect(t, r, http.StatusServiceUnavailable)
	var e struct{ Error, Code string }
	_ = r.JSON(&e)
	if e.Code != "module_failed" || !strings.Contains(e.Error, missing+"@1.0.0 failed to build") {
		t.Fatalf("invocation: %s", r.Body)
	}
	expect(t, do(t, n, "GET", "/healthz", "", nil), http.StatusOK)
	expect(t, do(t, n, "GET", "/readyz", "", nil), http.StatusOK)
	deploy(t, n, tok, "acme", "fine", `module.exports = cb => cb(null, 'fine')`, nil)
	expect(t, do(t, n, "GET", "/run/acme/fine", "", nil), http.StatusOK)
	var list []struct{ Name, Status string }
	r = do(t, n, "GET", "/api/v1/tenants/acme/functions", tok, nil)
	_ = r.JSON(&list)
	if len(list) != 2 || list[0].Name != "broken" || list[0].Status != "failed" || list[1].Status != "ready" {
		t.Fatalf("list: %s", r.Body)
	}
}

// peers uses ajv-keywords (peerDependency ajv ^8.8.2) with ajv itself: its
// "transform" keyword generates code with ajv's codegen, which only works when
// the plugin's ajv and the function's are one instance (a second copy makes
// ajv compile broken code and throw).
const peers = `const Ajv = require('ajv');
const Module = require('module');
module.exports = function (cb) {
	const pluginsAjv = Module.createRequire(require.resolve('ajv-keywords'))('ajv');
	const ajv = new Ajv();
	require('ajv-keywords')(ajv, ['transform']);
	let data = {s: '  shout  '}, valid, error;
	try {
		valid = ajv.compile({type: 'object', properties: {s: {type: 'string', transform: ['trim', 'toUpperCase']}}})(data);
	} catch (e) { error = e.message.slice(0, 80) }
	cb(null, {same: pluginsAjv === Ajv, valid, data, error, ajv: require('ajv/package.json').version});
};`

// Invariant: a function that declares a plugin (ajv-keywords) and its peer
// host (ajv) sees one copy of the host: the plugin resolves the function's ajv,
// not the copy npm installed beside it in its closure, and the plugin works.
func TestPeerDependencyOneHost(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	tok := createTenant(t, n, "acme")
	_, st := putFn(t, n, tok, "acme", "peers", "?wait=180s", map[string]any{"code": peers,
		"dependencies": map[string]string{"ajv": "8.12.0", "ajv-keywords": "5.1.0"}})
	if st.Status != "ready" {
		t.Fatalf("PUT: %+v", st)
	}
	if m := getModule(t, n, tok, "ajv-keywords@5.1.0"); m.Status != "ready" {
		t.Fatalf("ajv-keywords: %+v", m)
	}
	r := do(t, n, "GET", "/run/acme/peers", "", nil)
	expect(t, r, http.StatusOK)
	var out struct {
		Same, Valid bool
		Data        struct{ S string }
		Error, Ajv  string
	}
	_ = r.JSON(&out)
	if !out.Same || !out.Valid || out.Data.S != "SHOUT" || out.Error != "" || out.Ajv != "8.12.0" {
		t.Fatalf("plugin and function see different hosts: %s", r.Body)
	}
}

// Invariant: a builder killed mid-build (kill -9) leaves a job that another
// builder finishes once the dead one's lease expires; until a module is
// built, invoking a function that needs it answers 503 with Retry-After.
func TestKilledBuilderJobFinishedByAnother(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	uri := startStore(ctx, t)
	// A node that builds nothing itself: builders run on their own.
	n := startNode(t, wharftest.WithArgs("--mongo-uri", uri, "--builders", "0"))
	tok := createTenant(t, n, "acme")
	code, st := putFn(t, n, tok, "acme", "f", "", map[string]any{
		"code":         `const _ = require('lodash'); module.exports = cb => cb(null, _.kebabCase('Killed Builder'))`,
		"dependencies": map[string]string{"lodash": "4.17.21"}})
	if code != http.StatusCreated || st.Status != "building" {
		t.Fatalf("PUT: %d %+v", code, st)
	}
	r := do(t, n, "GET", "/run/acme/f", "", nil)
	expect(t, r, http.StatusServiceUnavailable)
	if r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), "module_not_ready") {
		t.Fatalf("invocation while building: %v %s", r.Header, r.Body)
	}

	idA, idB := "tba"+randSuffix(), "tbb"+randSuffix()
	a, err := wharftest.RunBuilder(ctx, uri, idA, "--build-lease", "3s", "--builders", "1")
	wharftest.CleanupProc(t, a, idA)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "builder A's build container", func() bool {
		return len(buildContainers(t, idA)) > 0
	})
	a.Kill()
	if m := getModule(t, n, tok, "lodash@4.17.21"); m.Status != "building" || m.Attempts != 1 {
		t.Fatalf("after killing A: %+v", m)
	}

	b, err := wharftest.RunBuilder(ctx, uri, idB, "--build-lease", "3s", "--builders", "1")
	wharftest.CleanupProc(t, b, idB)
	if err != nil {
		t.Fatal(err)
	}
	var m moduleInfo
	eventually(t, 90*time.Second, "another builder to finish the job", func() bool {
		m = getModule(t, n, tok, "lodash@4.17.21")
		return m.Status != "building"
	})
	if m.Status != "ready" || m.Attempts != 2 || m.BuiltBy != idB {
		t.Fatalf("module: %+v", m)
	}
	eventually(t, 30*time.Second, "the function to answer", func() bool {
		r := do(t, n, "GET", "/run/acme/f", "", nil)
		return r.Status == http.StatusOK && string(r.Body) == `"killed-builder"`
	})
	if left := buildContainers(t, idB); len(left) != 0 {
		t.Fatalf("builder B left %d build containers", len(left))
	}
}

func buildContainers(t *testing.T, id string) []engine.ContainerInfo {
	t.Helper()
	var out []engine.ContainerInfo
	for _, c := range nodeContainers(t, id) {
		if c.Labels[engine.LabelRole] == "build" {
			out = append(out, c)
		}
	}
	return out
}

func randSuffix() string {
	return strings.ToLower(strings.ReplaceAll(time.Now().Format("150405.000000"), ".", ""))
}

// Invariant: a node that did not take the deploy downloads a built module
// from the store the first time one of its functions needs it (verified,
// unpacked once), and never again for later requests or other tenants.
func TestOtherNodeUnpacksOnFirstNeed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	uri := startStore(ctx, t)
	// One cluster: one store, one secrets key, one admin token.
	key := "--secrets-key=" + strings.Repeat("ab", 32)
	admin := wharftest.WithAdminToken("wha_test_cluster_" + randSuffix())
	a := startNode(t, admin, wharftest.WithArgs("--mongo-uri", uri, key))
	b := startNode(t, admin, wharftest.WithArgs("--mongo-uri", uri, key, "--builders", "0"))
	tok := createTenant(t, a, "acme")
	const code = `const ms = require('ms'); module.exports = cb => cb(null, ms(90000))`
	if _, st := putFn(t, a, tok, "acme", "f", "?wait=120s", map[string]any{"code": code, "dependencies": map[string]string{"ms": "2.1.3"}}); st.Status != "ready" {
		t.Fatalf("PUT on A: %+v", st)
	}
	if strings.Contains(b.Stderr(), "module unpacked") {
		t.Fatal("B unpacked a module before any of its functions needed it")
	}
	for i := range 3 {
		r := do(t, b, "GET", "/run/acme/f", "", nil)
		expect(t, r, http.StatusOK)
		if string(r.Body) != `"2m"` {
			t.Fatalf("request %d on B: %s", i, r.Body)
		}
	}
	globex := createTenant(t, b, "globex")
	deploy(t, b, globex, "globex", "g", code, map[string]any{"dependencies": map[string]string{"ms": "2.1.3"}})
	expect(t, do(t, b, "GET", "/run/globex/g", "", nil), http.StatusOK)
	if n := strings.Count(b.Stderr(), "msg=\"module unpacked\" node="+b.NodeID+" component=modulecache module=ms@2.1.3"); n != 1 {
		t.Fatalf("B unpacked ms@2.1.3 %d times, want 1:\n%s", n, b.Stderr())
	}
	if strings.Contains(b.Stderr(), "msg=building") {
		t.Fatal("B built a module")
	}
}
