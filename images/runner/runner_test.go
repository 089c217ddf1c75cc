package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Messages of the webtask contract (design/WEBTASK.md), checked verbatim.
const (
	msgNotProvisioned = "Function is not provisioned in this container."
	msgNotFunction    = "Supplied code must return or export a function."
	msgBadArity       = "The JavaScript function must have one of the following signatures: ([ctx], callback) or (ctx, req, res)."
	msgCbError        = "Script returned an error."
	msgSerialize      = "Error when JSON serializing the result of the JavaScript code."
	msgSyncThrow      = "Script generated an unhandled synchronous exception."
	msgAsyncThrow     = "Script generated an unhandled asynchronous exception."
	msgInvalid        = "Invalid function name or version."
)

// ---------------------------------------------------------------------------------------------------------------------
// Harness

// syncBuffer collects a process's output and lets a test wait for a line to appear.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) waitFor(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(b.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in output:\n%s", substr, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type runnerProc struct {
	base    string
	appDir  string
	cmd     *exec.Cmd
	stdout  *syncBuffer
	stderr  *syncBuffer
	exited  chan struct{}
	waitErr error
	client  *http.Client
}

// startRunner starts runner.js (the embedded Source, so the bytes the image ships are the bytes tested) with the
// host's node on a free loopback port and an empty app directory, and waits until it is ready.
func startRunner(t *testing.T, env ...string) *runnerProc {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "runner.js")
	if err := os.WriteFile(script, Source, 0o644); err != nil {
		t.Fatal(err)
	}
	appDir := filepath.Join(dir, "app")
	if err := os.MkdirAll(filepath.Join(appDir, "functions"), 0o755); err != nil {
		t.Fatal(err)
	}

	// The free port may be taken between probing and node's listen; retry a few times.
	var lastErr string
	for attempt := 0; attempt < 5; attempt++ {
		r, ok, stderr := tryStart(t, node, script, appDir, env...)
		if ok {
			return r
		}
		lastErr = stderr
	}
	t.Fatalf("runner did not become ready:\n%s", lastErr)
	return nil
}

func tryStart(t *testing.T, node, script, appDir string, extraEnv ...string) (*runnerProc, bool, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	cmd := exec.Command(node, script)
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "WHARF_") || strings.HasPrefix(kv, "NODE_OPTIONS=") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env,
		"WHARF_PORT="+strconv.Itoa(port),
		"WHARF_HOST=127.0.0.1",
		"WHARF_APP_DIR="+appDir,
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	r := &runnerProc{
		base:   "http://127.0.0.1:" + strconv.Itoa(port),
		appDir: appDir,
		cmd:    cmd,
		stdout: &syncBuffer{},
		stderr: &syncBuffer{},
		exited: make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	cmd.Stdout = r.stdout
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		if !r.hasExited() {
			_ = cmd.Process.Kill()
		}
		<-r.exited
		r.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("runner stdout:\n%s\nrunner stderr:\n%s", r.stdout, r.stderr)
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r.hasExited() {
			return nil, false, r.stderr.String()
		}
		resp, err := r.client.Get(r.base + "/_wharf/ready")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, true, ""
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, false, "timed out; stderr:\n" + r.stderr.String()
}

func (r *runnerProc) hasExited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// waitExit waits for the process to end and returns its exit code.
func (r *runnerProc) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(timeout):
		t.Fatalf("runner still running after %v", timeout)
	}
	if r.waitErr == nil {
		return 0
	}
	var exitErr *exec.ExitError
	if errors.As(r.waitErr, &exitErr) {
		return exitErr.ExitCode()
	}
	t.Fatalf("wait: %v", r.waitErr)
	return -1
}

func (r *runnerProc) assertAlive(t *testing.T) {
	t.Helper()
	if r.hasExited() {
		t.Fatalf("runner exited: %v", r.waitErr)
	}
	got := r.do(t, call{noFunction: true, target: "/_wharf/ready"})
	if got.status != http.StatusOK {
		t.Fatalf("ready probe: status %d, body %s", got.status, got.body)
	}
}

type cfgOption func(map[string]any)

func withSecrets(s map[string]any) cfgOption { return func(c map[string]any) { c["secrets"] = s } }
func withMeta(m map[string]any) cfgOption    { return func(c map[string]any) { c["meta"] = m } }
func withoutKeys(keys ...string) cfgOption {
	return func(c map[string]any) {
		for _, k := range keys {
			delete(c, k)
		}
	}
}

// deploy writes a function version the way the Wharf handler does: config.json and function.js, each through a
// temporary file and a rename, into functions/<name>/<version>/.
func (r *runnerProc) deploy(t *testing.T, name string, version int, code string, opts ...cfgOption) string {
	t.Helper()
	cfg := map[string]any{
		"tenant": "acme", "name": name, "version": version, "timeout_ms": 30000,
		"secrets": map[string]any{}, "meta": map[string]any{},
	}
	for _, o := range opts {
		o(cfg)
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(r.appDir, "functions", name, strconv.Itoa(version))
	writeAtomic(t, filepath.Join(dir, "config.json"), cfgJSON)
	writeAtomic(t, filepath.Join(dir, "function.js"), []byte(code))
	return dir
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// call describes one request. By default it targets /api/run/acme/<fn><path> with x-wharf-route <fn>@1.
type call struct {
	method      string
	fn          string
	version     string
	noFunction  bool // send no x-wharf-route header
	noVersion   bool // send x-wharf-route without its @<version>
	path        string
	target      string // overrides the whole request target
	header      map[string]string
	contentType string
	body        string
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r *runnerProc) request(ctx context.Context, c call) (*http.Request, error) {
	method := c.method
	if method == "" {
		method = http.MethodGet
		if c.body != "" {
			method = http.MethodPost
		}
	}
	target := c.target
	if target == "" {
		target = "/api/run/acme/" + c.fn + c.path
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+target, body)
	if err != nil {
		return nil, err
	}
	if !c.noFunction {
		route := c.fn
		if !c.noVersion {
			v := c.version
			if v == "" {
				v = "1"
			}
			route += "@" + v
		}
		req.Header["X-Wharf-Route"] = []string{route}
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	for k, v := range c.header {
		req.Header[k] = []string{v} // as given: exercises the runner's lower-casing
	}
	return req, nil
}

// send performs c without failing the test, so it can run on other goroutines.
func (r *runnerProc) send(ctx context.Context, c call) (reply, error) {
	req, err := r.request(ctx, c)
	if err != nil {
		return reply{}, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (r *runnerProc) do(t *testing.T, c call) reply {
	t.Helper()
	got, err := r.send(context.Background(), c)
	if err != nil {
		t.Fatalf("request %+v: %v", c, err)
	}
	return got
}

// expect checks status, x-wt-response-source and a JSON content type.
func (rep reply) expect(t *testing.T, status int, source string) {
	t.Helper()
	if rep.status != status {
		t.Errorf("status = %d, want %d; body %s", rep.status, status, rep.body)
	}
	if got := rep.header.Get("X-Wt-Response-Source"); got != source {
		t.Errorf("x-wt-response-source = %q, want %q", got, source)
	}
}

func (rep reply) expectJSONType(t *testing.T) {
	t.Helper()
	if ct := rep.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type = %q, want application/json", ct)
	}
}

func (rep reply) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rep.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, rep.body)
	}
	return m
}

// equalJSON compares two JSON documents by value.
func equalJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON mismatch\n got: %s\nwant: %s", got, want)
	}
}

// ---------------------------------------------------------------------------------------------------------------------
// Tests

func TestEmbeddedSourceIsRunnerJS(t *testing.T) {
	onDisk, err := os.ReadFile("runner.js")
	if err != nil {
		t.Fatal(err)
	}
	if len(Source) == 0 || !bytes.Equal(onDisk, Source) {
		t.Fatalf("Source (%d bytes) does not match runner.js (%d bytes)", len(Source), len(onDisk))
	}
}

func TestReadyProbeAndControlPaths(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	cases := []struct {
		name   string
		method string
		target string
		status int
		body   string
	}{
		{"ready", "GET", "/_wharf/ready", 200, `{"ok":true}`},
		{"ready with query", "GET", "/_wharf/ready?probe=1", 200, `{"ok":true}`},
		{"ready HEAD", "HEAD", "/_wharf/ready", 200, ``},
		{"ready POST", "POST", "/_wharf/ready", 405, `{"code":405,"error":"Method not allowed."}`},
		{"root", "GET", "/", 404, `{"code":404,"error":"Not found."}`},
		{"function path without header", "GET", "/api/run/acme/hello", 404, `{"code":404,"error":"Not found."}`},
		{"ready prefix", "GET", "/_wharf/ready/x", 404, `{"code":404,"error":"Not found."}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := r.do(t, call{method: tc.method, target: tc.target, noFunction: true, noVersion: true})
			got.expect(t, tc.status, "proxy")
			got.expectJSONType(t)
			if tc.body == "" {
				if len(got.body) != 0 {
					t.Errorf("HEAD body = %q", got.body)
				}
				return
			}
			equalJSON(t, got.body, tc.body)
		})
	}
}

func TestMalformedRequestsAnswerJSON(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	cases := []struct {
		name   string
		raw    string
		status string
	}{
		{"garbage request line", "NOT HTTP AT ALL\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"oversized headers", "GET /_wharf/ready HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70*1024) + "\r\n\r\n", "HTTP/1.1 431 "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, tc.raw); err != nil {
				t.Fatal(err)
			}
			resp, err := io.ReadAll(conn)
			if err != nil && len(resp) == 0 {
				t.Fatal(err)
			}
			text := string(resp)
			if !strings.HasPrefix(text, tc.status) || !strings.Contains(text, "x-wt-response-source: proxy") ||
				!strings.Contains(text, "content-type: application/json") {
				t.Errorf("response:\n%s", text)
			}
		})
	}
	// Headers larger than node's 16 KiB default but within the runner's limit are accepted.
	got := r.do(t, call{noFunction: true, noVersion: true, target: "/_wharf/ready", header: map[string]string{"X-Big": strings.Repeat("b", 40*1024)}})
	got.expect(t, 200, "proxy")
}

func TestFunctionForms(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	cases := []struct {
		name        string
		code        string
		path        string
		status      int
		contentType string
		body        string // exact body
	}{
		{
			name:   "callback only, module.exports",
			code:   `module.exports = function (cb) { cb(null, { form: 'cb' }); };`,
			status: 200, body: `{"form":"cb"}`,
		},
		{
			name:   "context and callback",
			code:   `module.exports = function (ctx, cb) { cb(null, { form: 'ctx', who: ctx.query.who }); };`,
			path:   "?who=ann",
			status: 200, body: `{"form":"ctx","who":"ann"}`,
		},
		{
			name: "context, req, res",
			code: `module.exports = function (ctx, req, res) {
				res.writeHead(201, { 'content-type': 'text/plain', 'x-custom': 'yes' });
				res.end('raw ' + req.method);
			};`,
			status: 201, contentType: "text/plain", body: `raw GET`,
		},
		{
			name:   "top-level return",
			code:   "// a comment first\nvar greeting = 'hi';\nreturn function (cb) { cb(null, greeting); };\n",
			status: 200, body: `"hi"`,
		},
		{
			name:   "top-level return wins over module.exports",
			code:   `module.exports = function (cb) { cb(null, 'exports'); }; return function (cb) { cb(null, 'returned'); };`,
			status: 200, body: `"returned"`,
		},
		{
			name:   "bare top-level return falls back to module.exports",
			code:   `module.exports = function (cb) { cb(null, 'exports'); }; return;`,
			status: 200, body: `"exports"`,
		},
		{
			name:   "exports object is module.exports",
			code:   `exports.ignored = 1; module.exports = function (cb) { cb(null, typeof exports + ':' + typeof __filename + ':' + typeof __dirname); };`,
			status: 200, body: `"object:string:string"`,
		},
		{
			name:   "UTF-8 BOM",
			code:   "\ufeffmodule.exports = function (cb) { cb(null, 'bom ok'); };",
			status: 200, body: `"bom ok"`,
		},
		{
			name:   "UTF-8 BOM before top-level return",
			code:   "\ufeffreturn function (cb) { cb(null, 'bom return'); };",
			status: 200, body: `"bom return"`,
		},
		{
			name:   "hashbang",
			code:   "#!/usr/bin/env node\nmodule.exports = function (cb) { cb(null, 'shebang'); };",
			status: 200, body: `"shebang"`,
		},
		{
			name:   "async function finishing through cb",
			code:   `module.exports = async function (ctx, cb) { await new Promise(function (r) { setTimeout(r, 5); }); cb(null, { async: true }); };`,
			status: 200, body: `{"async":true}`,
		},
		{
			name:   "arrow function",
			code:   `module.exports = (ctx, cb) => cb(null, 'arrow');`,
			status: 200, body: `"arrow"`,
		},
	}
	for i, tc := range cases {
		name := fmt.Sprintf("form%d", i)
		r.deploy(t, name, 1, tc.code)
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := r.do(t, call{fn: name, path: tc.path})
			got.expect(t, tc.status, "webtask")
			want := tc.contentType
			if want == "" {
				want = "application/json"
			}
			if ct := got.header.Get("Content-Type"); ct != want {
				t.Errorf("content-type = %q, want %q", ct, want)
			}
			if string(got.body) != tc.body {
				t.Errorf("body = %s, want %s", got.body, tc.body)
			}
		})
	}
}

func TestCommentsSurviveInToString(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "exported", 1, `/* file header */
module.exports = function selfAware(cb) {
  // line comment: keep me
  /* block comment: keep me too */
  cb(null, selfAware.toString());
};`)
	r.deploy(t, "returned", 1, `var self = function (ctx, cb) {
  /*
   * multi-line doc block, read back by the code
   */
  cb(null, self.toString());
};
return self;`)

	got := r.do(t, call{fn: "exported"})
	got.expect(t, 200, "webtask")
	var src string
	if err := json.Unmarshal(got.body, &src); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"// line comment: keep me", "/* block comment: keep me too */", "function selfAware(cb)"} {
		if !strings.Contains(src, want) {
			t.Errorf("toString() = %q, missing %q", src, want)
		}
	}

	got = r.do(t, call{fn: "returned"})
	got.expect(t, 200, "webtask")
	if err := json.Unmarshal(got.body, &src); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src, "multi-line doc block, read back by the code") {
		t.Errorf("toString() = %q lost its comment", src)
	}
}

func TestCompilerErrors(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	cases := []struct {
		name   string
		code   string
		error  string // exact, or prefix when prefix is set
		prefix bool
		check  func(t *testing.T, body map[string]any)
	}{
		{name: "exports an object", code: `module.exports = { handler: function (cb) {} };`, error: msgNotFunction},
		{name: "exports nothing", code: `var x = 1;`, error: msgNotFunction},
		{name: "exports a number", code: `module.exports = 42;`, error: msgNotFunction},
		{name: "returns a string", code: `return 'function (cb) {}';`, error: msgNotFunction},
		{name: "no parameters", code: `module.exports = function () {};`, error: msgBadArity},
		{name: "four parameters", code: `module.exports = function (a, b, c, d) {};`, error: msgBadArity},
		{name: "rest parameters only", code: `module.exports = function (...args) {};`, error: msgBadArity},
		{
			name:  "syntax error",
			code:  "var a = 1;\nvar b = {\n  x: 1,,\n};\nmodule.exports = function (cb) { cb(); };\n",
			error: "Compilation failed: Unexpected token ','",
			check: func(t *testing.T, body map[string]any) {
				if body["line"] != float64(3) {
					t.Errorf("line = %v, want 3", body["line"])
				}
				if body["column"] != float64(8) {
					t.Errorf("column = %v, want 8", body["column"])
				}
				details, _ := body["details"].(string)
				if !strings.Contains(details, "SyntaxError") || !strings.Contains(details, "line 3, column 8") {
					t.Errorf("details = %q, want the SyntaxError with its line and column", details)
				}
			},
		},
		{
			name:   "syntax error on the first line",
			code:   "module.exports = function (cb) { cb(null, 1) ) };",
			error:  "Compilation failed: ",
			prefix: true,
			check: func(t *testing.T, body map[string]any) {
				if body["line"] != float64(1) {
					t.Errorf("line = %v, want 1", body["line"])
				}
				if body["column"] != float64(46) {
					t.Errorf("column = %v, want 46", body["column"])
				}
			},
		},
		{
			name:   "syntax error after a BOM",
			code:   "\ufeffmodule.exports = function (cb) { cb(null, 1) ) };",
			error:  "Compilation failed: ",
			prefix: true,
			check: func(t *testing.T, body map[string]any) {
				// The BOM is not part of the code: positions are those of the file without it.
				if body["line"] != float64(1) || body["column"] != float64(46) {
					t.Errorf("position = %v:%v, want 1:46", body["line"], body["column"])
				}
			},
		},
		{
			name:  "top-level throw",
			code:  `throw new Error('top-level boom'); module.exports = function (cb) {};`,
			error: "Compilation failed: top-level boom",
		},
		{
			name:   "require of a missing module",
			code:   `var m = require('definitely-not-installed'); module.exports = function (cb) {};`,
			error:  "Compilation failed: Cannot find module 'definitely-not-installed'",
			prefix: true,
		},
	}
	for i, tc := range cases {
		name := fmt.Sprintf("broken%d", i)
		r.deploy(t, name, 1, tc.code)
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := r.do(t, call{fn: name})
			got.expect(t, 400, "compiler")
			got.expectJSONType(t)
			body := got.object(t)
			if body["code"] != float64(400) {
				t.Errorf("code = %v, want 400", body["code"])
			}
			msg, _ := body["error"].(string)
			if tc.prefix && !strings.HasPrefix(msg, tc.error) || !tc.prefix && msg != tc.error {
				t.Errorf("error = %q, want %q (prefix %v)", msg, tc.error, tc.prefix)
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}

	// Failures are not cached as successes, and the runner is unharmed: the next version of a function works.
	r.deploy(t, "broken0", 2, `module.exports = function (cb) { cb(null, 'fixed'); };`)
	got := r.do(t, call{fn: "broken0", version: "2"})
	got.expect(t, 200, "webtask")
	if string(got.body) != `"fixed"` {
		t.Errorf("fixed version answered %s", got.body)
	}
}

func TestCallbackResults(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	cases := []struct {
		name   string
		result string // JS expression passed as cb(null, <result>)
		status int
		body   string // exact body for 200, the error message otherwise
	}{
		{"string", `'hello'`, 200, `"hello"`},
		{"unicode string", `'grüße ✓'`, 200, `"grüße ✓"`},
		{"number", `42`, 200, `42`},
		{"true", `true`, 200, `true`},
		{"array", `[1, 'two', null]`, 200, `[1,"two",null]`},
		{"object", `{ a: { b: [1, 2] }, c: 'd' }`, 200, `{"a":{"b":[1,2]},"c":"d"}`},
		{"toJSON", `{ toJSON: function () { return { via: 'toJSON' }; } }`, 200, `{"via":"toJSON"}`},
		{"undefined", `undefined`, 200, `{}`},
		{"null", `null`, 200, `{}`},
		{"zero", `0`, 200, `{}`},
		{"empty string", `''`, 200, `{}`},
		{"false", `false`, 200, `{}`},
		{"NaN", `NaN`, 200, `{}`},
		{"circular", `(function () { var o = {}; o.self = o; return o; })()`, 400, msgSerialize},
		{"BigInt", `{ n: BigInt(1) }`, 400, msgSerialize},
		{"throwing toJSON", `{ toJSON: function () { throw new Error('nope'); } }`, 400, msgSerialize},
		{"function", `function () {}`, 400, msgSerialize},
	}
	for i, tc := range cases {
		name := fmt.Sprintf("result%d", i)
		r.deploy(t, name, 1, `module.exports = function (ctx, cb) { cb(null, `+tc.result+`); };`)
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := r.do(t, call{fn: name})
			got.expect(t, tc.status, "webtask")
			got.expectJSONType(t)
			if tc.status == 200 {
				if string(got.body) != tc.body {
					t.Errorf("body = %s, want %s", got.body, tc.body)
				}
				return
			}
			body := got.object(t)
			if body["error"] != tc.body || body["code"] != float64(tc.status) {
				t.Errorf("body = %s, want code %d and error %q", got.body, tc.status, tc.body)
			}
		})
	}
}

func TestCallbackErrorsAndThrows(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	cases := []struct {
		name   string
		code   string
		status int
		want   string // exact JSON; fields the runner adds beyond it are compared only if listed here
		fields map[string]string
		absent []string
		stack  string // substring the stack must contain
	}{
		{
			name:   "Error",
			code:   `module.exports = function (cb) { cb(new Error('boom')); };`,
			status: 400,
			fields: map[string]string{"error": msgCbError, "details": "Error: boom", "name": "Error", "message": "boom"},
			stack:  "function.js",
		},
		{
			name:   "Error with statusCode",
			code:   `module.exports = function (cb) { var e = new Error('forbidden'); e.statusCode = 403; cb(e); };`,
			status: 403,
			fields: map[string]string{"error": msgCbError, "details": "Error: forbidden", "message": "forbidden"},
		},
		{
			name:   "custom error class",
			code:   `class NotFound extends Error { constructor(m) { super(m); this.name = 'NotFound'; this.statusCode = 404; } } module.exports = function (cb) { cb(new NotFound('no such thing')); };`,
			status: 404,
			fields: map[string]string{"details": "NotFound: no such thing", "name": "NotFound", "message": "no such thing"},
		},
		{
			name:   "invalid statusCode falls back to 400",
			code:   `module.exports = function (cb) { var e = new Error('x'); e.statusCode = 'teapot'; cb(e); };`,
			status: 400,
			fields: map[string]string{"error": msgCbError},
		},
		{
			name:   "out-of-range statusCode falls back to 400",
			code:   `module.exports = function (cb) { var e = new Error('x'); e.statusCode = 42; cb(e); };`,
			status: 400,
			fields: map[string]string{"error": msgCbError},
		},
		{
			name:   "string error",
			code:   `module.exports = function (ctx, cb) { cb('plain text'); };`,
			status: 400,
			want:   `{"code":400,"error":"Script returned an error.","details":"plain text"}`,
		},
		{
			name:   "plain object error",
			code:   `module.exports = function (cb) { cb({ statusCode: 409, message: 'conflict' }); };`,
			status: 409,
			fields: map[string]string{"error": msgCbError, "details": "[object Object]", "message": "conflict"},
			absent: []string{"name", "stack"},
		},
		{
			name:   "second callback ignored",
			code:   `module.exports = function (cb) { cb(null, 'first'); cb(null, 'second'); cb(new Error('third')); };`,
			status: 200,
			want:   `"first"`,
		},
		{
			name:   "error then result",
			code:   `module.exports = function (cb) { cb('nope'); cb(null, 'late'); };`,
			status: 400,
			want:   `{"code":400,"error":"Script returned an error.","details":"nope"}`,
		},
		{
			name:   "synchronous throw",
			code:   `module.exports = function (ctx, cb) { throw new TypeError('kaboom'); };`,
			status: 500,
			fields: map[string]string{"error": msgSyncThrow, "details": "TypeError: kaboom", "name": "TypeError", "message": "kaboom"},
			stack:  "function.js:1",
		},
		{
			name:   "synchronous throw of a string",
			code:   `module.exports = function (cb) { throw 'just a string'; };`,
			status: 500,
			want:   `{"code":500,"error":"Script generated an unhandled synchronous exception.","details":"just a string"}`,
		},
		{
			name:   "synchronous throw in the 3-argument form",
			code:   `module.exports = function (ctx, req, res) { res.setHeader('x-leak', '1'); throw new Error('req-res boom'); };`,
			status: 500,
			fields: map[string]string{"error": msgSyncThrow, "message": "req-res boom"},
		},
		{
			name:   "throw after the callback keeps the answer",
			code:   `module.exports = function (cb) { cb(null, 'answered'); throw new Error('after answering'); };`,
			status: 200,
			want:   `"answered"`,
		},
		{
			name: "write after end in the 3-argument form is not fatal",
			code: `module.exports = function (ctx, req, res) {
				res.setHeader('content-type', 'application/json');
				res.end('"done"');
				res.write('too late');
			};`,
			status: 200,
			want:   `"done"`,
		},
		{
			name:   "rejected async function fails its request",
			code:   `module.exports = async function (ctx, cb) { await null; throw new Error('async fn rejected'); };`,
			status: 500,
			fields: map[string]string{"error": msgAsyncThrow, "message": "async fn rejected"},
		},
	}
	for i, tc := range cases {
		r.deploy(t, fmt.Sprintf("err%d", i), 1, tc.code)
	}
	t.Run("cases", func(t *testing.T) {
		for i, tc := range cases {
			name := fmt.Sprintf("err%d", i)
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				got := r.do(t, call{fn: name})
				got.expect(t, tc.status, "webtask")
				got.expectJSONType(t)
				if got.header.Get("X-Leak") != "" {
					t.Errorf("runner's error response kept a header the code set: %v", got.header)
				}
				if tc.want != "" {
					equalJSON(t, got.body, tc.want)
					return
				}
				body := got.object(t)
				if body["code"] != float64(tc.status) {
					t.Errorf("code = %v, want %d", body["code"], tc.status)
				}
				for k, v := range tc.fields {
					if body[k] != v {
						t.Errorf("%s = %#v, want %q", k, body[k], v)
					}
				}
				for _, k := range tc.absent {
					if _, ok := body[k]; ok {
						t.Errorf("%s present: %s", k, got.body)
					}
				}
				if tc.stack != "" {
					if s, _ := body["stack"].(string); !strings.Contains(s, tc.stack) {
						t.Errorf("stack = %q, want it to mention %q", s, tc.stack)
					}
				}
			})
		}
	})
	// Every throw and rejection above stayed with its own request: the process is still serving.
	r.assertAlive(t)
	if !strings.Contains(r.stderr.String(), "after answering") {
		t.Errorf("the throw after answering was not logged:\n%s", r.stderr)
	}
}

func TestContextQuery(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	code := `module.exports = function (ctx, cb) {
		cb(null, { query: ctx.query, data: ctx.data, plain: Object.getPrototypeOf(ctx.query) === Object.prototype });
	};`
	r.deploy(t, "q2", 1, code)
	r.deploy(t, "q3", 1, `module.exports = function (ctx, req, res) {
		res.setHeader('content-type', 'application/json');
		res.end(JSON.stringify({ query: ctx.query, data: ctx.data, plain: Object.getPrototypeOf(ctx.query) === Object.prototype }));
	};`)
	path := "/sub/path?a=1&b=2&b=3&key=tenant-key&webtask_no_cache=1&webtask_pb=1&c=&d=%20x%26y&e&__proto__=p"
	want := `{"a":"1","b":["2","3"],"c":"","d":" x&y","e":"","__proto__":"p"}`
	for _, fn := range []string{"q2", "q3"} {
		t.Run(fn, func(t *testing.T) {
			got := r.do(t, call{fn: fn, path: path})
			got.expect(t, 200, "webtask")
			var body struct {
				Query json.RawMessage
				Data  json.RawMessage
				Plain bool
			}
			if err := json.Unmarshal(got.body, &body); err != nil {
				t.Fatalf("%v: %s", err, got.body)
			}
			equalJSON(t, body.Query, want)
			equalJSON(t, body.Data, want)
			if !body.Plain {
				t.Errorf("ctx.query is not a plain object")
			}
		})
	}
}

func TestContextBody(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "body", 1, `module.exports = function (ctx, cb) {
		cb(null, { hasBody: ctx.body !== undefined, body: ctx.body, raw: ctx.body_raw, rawType: typeof ctx.body_raw, data: ctx.data });
	};`)
	r.deploy(t, "body1", 1, `module.exports = function (cb) { cb(null, 'no context, body still consumed'); };`)
	cases := []struct {
		name        string
		method      string
		contentType string
		body        string
		want        string
	}{
		{
			name: "JSON", contentType: "application/json", body: `{"a":1,"nested":{"b":[true]}}`,
			want: `{"hasBody":true,"body":{"a":1,"nested":{"b":[true]}},"raw":"{\"a\":1,\"nested\":{\"b\":[true]}}","rawType":"string","data":{"a":1,"nested":{"b":[true]}}}`,
		},
		{
			name: "JSON with charset and odd case", contentType: "Application/JSON; charset=utf-8", body: `{"ü":"✓"}`,
			want: `{"hasBody":true,"body":{"ü":"✓"},"raw":"{\"ü\":\"✓\"}","rawType":"string","data":{"ü":"✓"}}`,
		},
		{
			name: "JSON array", contentType: "application/json", body: `[1,2]`,
			want: `{"hasBody":true,"body":[1,2],"raw":"[1,2]","rawType":"string","data":{}}`,
		},
		{
			name: "form", contentType: "application/x-www-form-urlencoded", body: `a=1&b=x+y&b=z&c=%E2%9C%93`,
			want: `{"hasBody":true,"body":{"a":"1","b":["x y","z"],"c":"✓"},"raw":"a=1&b=x+y&b=z&c=%E2%9C%93","rawType":"string","data":{"a":"1","b":["x y","z"],"c":"✓"}}`,
		},
		{
			name: "invalid JSON", contentType: "application/json", body: `{"a":`,
			want: `{"hasBody":false,"raw":"{\"a\":","rawType":"string","data":{}}`,
		},
		{
			name: "text is not parsed", contentType: "text/plain", body: `{"a":1}`,
			want: `{"hasBody":false,"raw":"{\"a\":1}","rawType":"string","data":{}}`,
		},
		{
			name: "no body", method: "GET",
			want: `{"hasBody":false,"raw":"","rawType":"string","data":{}}`,
		},
		{
			name: "PUT JSON", method: "PUT", contentType: "application/json", body: `{"put":true}`,
			want: `{"hasBody":true,"body":{"put":true},"raw":"{\"put\":true}","rawType":"string","data":{"put":true}}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := r.do(t, call{fn: "body", method: tc.method, contentType: tc.contentType, body: tc.body})
			got.expect(t, 200, "webtask")
			equalJSON(t, got.body, tc.want)
		})
	}
	t.Run("one-argument form with a body", func(t *testing.T) {
		t.Parallel()
		got := r.do(t, call{fn: "body1", contentType: "application/json", body: `{"x":1}`})
		got.expect(t, 200, "webtask")
		equalJSON(t, got.body, `"no context, body still consumed"`)
	})
}

func TestLargeBodyHasNoLimit(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "size", 1, `module.exports = function (ctx, cb) { cb(null, { raw: ctx.body_raw.length, items: ctx.body.items.length }); };`)
	r.deploy(t, "size3", 1, `module.exports = function (ctx, req, res) {
		var n = 0;
		req.on('data', function (c) { n += c.length; });
		req.on('end', function () { res.end(String(n)); });
	};`)
	items := make([]string, 250000)
	for i := range items {
		items[i] = "item-number-" + strconv.Itoa(i)
	}
	payload, _ := json.Marshal(map[string]any{"items": items})
	if len(payload) < 4<<20 {
		t.Fatalf("payload only %d bytes", len(payload))
	}
	got := r.do(t, call{fn: "size", contentType: "application/json", body: string(payload)})
	got.expect(t, 200, "webtask")
	equalJSON(t, got.body, fmt.Sprintf(`{"raw":%d,"items":%d}`, len(payload), len(items)))

	got = r.do(t, call{fn: "size3", contentType: "application/octet-stream", body: string(payload)})
	got.expect(t, 200, "webtask")
	if string(got.body) != strconv.Itoa(len(payload)) {
		t.Errorf("3-argument form read %s bytes, want %d", got.body, len(payload))
	}
}

func TestContextDataSecretsMeta(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	echo := `module.exports = function (ctx, cb) {
		var before = JSON.parse(JSON.stringify({ data: ctx.data, secrets: ctx.secrets, meta: ctx.meta }));
		ctx.secrets.S = 'mutated'; ctx.meta.owner = 'mutated'; ctx.data.S = 'mutated';
		cb(null, before);
	};`
	r.deploy(t, "data", 1, echo,
		withSecrets(map[string]any{"S": "secret", "Z": "", "ONLY": "secret-only"}),
		withMeta(map[string]any{"owner": "team-a"}))
	r.deploy(t, "bare", 1, `module.exports = function (ctx, cb) {
		cb(null, { secrets: ctx.secrets, meta: ctx.meta, types: [typeof ctx.secrets, typeof ctx.meta], storage: 'storage' in ctx });
	};`, withoutKeys("secrets", "meta"))

	cases := []struct {
		name        string
		path        string
		contentType string
		body        string
		wantData    string
	}{
		{
			name: "JSON body", path: "?S=query&Q=query&Z=query",
			contentType: "application/json", body: `{"S":"body","Q":"body","B":"body","Z":"body","ONLY":"body"}`,
			wantData: `{"S":"secret","Q":"query","Z":"","ONLY":"secret-only","B":"body"}`,
		},
		{
			name: "form body", path: "?Q=query",
			contentType: "application/x-www-form-urlencoded", body: `S=body&Q=body&B=body`,
			wantData: `{"S":"secret","Q":"query","Z":"","ONLY":"secret-only","B":"body"}`,
		},
		{
			name: "no body", path: "?S=query&Q=query",
			wantData: `{"S":"secret","Q":"query","Z":"","ONLY":"secret-only"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Sequential on purpose: each request mutates its context, and the next must not see it.
			got := r.do(t, call{fn: "data", path: tc.path, contentType: tc.contentType, body: tc.body})
			got.expect(t, 200, "webtask")
			var body struct{ Data, Secrets, Meta json.RawMessage }
			if err := json.Unmarshal(got.body, &body); err != nil {
				t.Fatalf("%v: %s", err, got.body)
			}
			equalJSON(t, body.Data, tc.wantData)
			equalJSON(t, body.Secrets, `{"S":"secret","Z":"","ONLY":"secret-only"}`)
			equalJSON(t, body.Meta, `{"owner":"team-a"}`)
		})
	}
	t.Run("secrets and meta default to objects, storage is there", func(t *testing.T) {
		got := r.do(t, call{fn: "bare"})
		got.expect(t, 200, "webtask")
		equalJSON(t, got.body, `{"secrets":{},"meta":{},"types":["object","object"],"storage":true}`)
	})
}

func TestContextHeadersAndID(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "hdr", 1, `module.exports = function (ctx, cb) { cb(null, { headers: ctx.headers, id: ctx.id }); };`)

	got := r.do(t, call{fn: "hdr", header: map[string]string{
		"X-MiXeD-Case":   "Value Kept",
		"X-Request-Id":   "req-123",
		"X-Wharf-Extra":  "must not leak",
		"x-wharf-tenant": "must not leak either",
		"X-WHARF-SHOUT":  "nor in capitals",
	}})
	got.expect(t, 200, "webtask")
	var body struct {
		Headers map[string]any
		ID      string
	}
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.ID != "req-123" {
		t.Errorf("ctx.id = %q, want req-123", body.ID)
	}
	if body.Headers["x-mixed-case"] != "Value Kept" {
		t.Errorf("x-mixed-case = %#v; headers %v", body.Headers["x-mixed-case"], body.Headers)
	}
	if len(body.Headers) == 0 || body.Headers["host"] == nil {
		t.Errorf("headers look empty: %v", body.Headers)
	}
	for k := range body.Headers {
		if k != strings.ToLower(k) {
			t.Errorf("header %q is not lower-case", k)
		}
		if strings.HasPrefix(k, "x-wharf-") {
			t.Errorf("header %q reached the function", k)
		}
	}

	got = r.do(t, call{fn: "hdr"})
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.ID == "" {
		t.Errorf("ctx.id is empty without x-request-id")
	}

	// A routing header given twice is ambiguous: refused, never one of the two picked.
	req, err := r.request(context.Background(), call{fn: "hdr"})
	if err != nil {
		t.Fatal(err)
	}
	req.Header["X-Wharf-Route"] = []string{"hdr@1", "hdr@1"}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("two x-wharf-route headers: status %d, want 400", resp.StatusCode)
	}
}

func TestRequestResponseForm(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "express", 1, `module.exports = function (ctx, req, res) {
		var chunks = [];
		req.on('data', function (c) { chunks.push(c); });
		req.on('end', function () {
			function wharfIn(list) { return list.some(function (h) { return /^x-wharf-/i.test(h); }); }
			// The route normalisation webtask-tools' fromExpress performs with req.x_wt.
			var rx = new RegExp('^\\/api\\/run\\/[^\\/]+\\/' + (req.x_wt.jtn ? '(?:[^\\/\\?#]*\\/?)?' : ''));
			res.writeHead(201, { 'content-type': 'application/json', 'x-custom': 'yes' });
			res.end(JSON.stringify({
				raw: Buffer.concat(chunks).toString('utf8'),
				x_wt: req.x_wt,
				sameContext: req.webtaskContext === ctx,
				ctxBodyUndefined: ctx.body === undefined && ctx.body_raw === undefined,
				url: req.url,
				routed: req.url.replace(rx, '/'),
				method: req.method,
				query: ctx.query,
				secrets: ctx.secrets,
				id: ctx.id,
				wharfInHeaders: wharfIn(Object.keys(req.headers)),
				wharfInRawHeaders: wharfIn(req.rawHeaders),
				wharfInDistinct: wharfIn(Object.keys(req.headersDistinct)),
				contentType: req.headers['content-type']
			}));
		});
	};`, withSecrets(map[string]any{"API": "k"}))

	got := r.do(t, call{
		fn: "express", method: "PATCH", path: "/users/7?x=1&key=k",
		contentType: "application/json", body: `{"a":1}`,
		header: map[string]string{"X-Request-Id": "rid-3"},
	})
	got.expect(t, 201, "webtask")
	if got.header.Get("X-Custom") != "yes" {
		t.Errorf("x-custom = %q", got.header.Get("X-Custom"))
	}
	equalJSON(t, got.body, `{
		"raw": "{\"a\":1}",
		"x_wt": {"container": "acme", "jtn": "express", "url_format": 1},
		"sameContext": true,
		"ctxBodyUndefined": true,
		"url": "/api/run/acme/express/users/7?x=1&key=k",
		"routed": "/users/7?x=1&key=k",
		"method": "PATCH",
		"query": {"x": "1"},
		"secrets": {"API": "k"},
		"id": "rid-3",
		"wharfInHeaders": false,
		"wharfInRawHeaders": false,
		"wharfInDistinct": false,
		"contentType": "application/json"
	}`)
}

func TestCompileOnceAndNewVersions(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	code := func(v int) string {
		return fmt.Sprintf(`globalThis.__loads = (globalThis.__loads || 0) + 1;
var load = globalThis.__loads;
var n = 0;
module.exports = function (ctx, cb) { n++; var mine = n; setTimeout(function () { cb(null, { v: %d, load: load, n: mine }); }, 5); };`, v)
	}
	type answer struct{ V, Load, N int }
	get := func(t *testing.T, version string) answer {
		t.Helper()
		got := r.do(t, call{fn: "counter", version: version})
		got.expect(t, 200, "webtask")
		var a answer
		if err := json.Unmarshal(got.body, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}

	r.deploy(t, "counter", 1, code(1))
	for i := 1; i <= 3; i++ {
		if a := get(t, "1"); a != (answer{V: 1, Load: 1, N: i}) {
			t.Fatalf("request %d to version 1 = %+v, want n=%d with a single load", i, a, i)
		}
	}

	// A new version is a new directory; many concurrent first requests still load it once.
	r.deploy(t, "counter", 2, code(2))
	const n = 20
	var wg sync.WaitGroup
	results := make([]answer, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := r.send(context.Background(), call{fn: "counter", version: "2"})
			if err == nil {
				err = json.Unmarshal(rep.body, &results[i])
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		a := results[i]
		if a.V != 2 || a.Load != 2 {
			t.Errorf("concurrent request %d = %+v, want version 2 from load 2", i, a)
		}
		seen[a.N] = true
	}
	if len(seen) != n {
		t.Errorf("module state not shared by one instance: counters %v", seen)
	}
	if a := get(t, "2"); a != (answer{V: 2, Load: 2, N: n + 1}) {
		t.Errorf("after the burst = %+v", a)
	}

	// Loading version 2 dropped version 1 from the cache (the host routes to the newest version); a straggling
	// request for version 1 still works, from a fresh load.
	if a := get(t, "1"); a != (answer{V: 1, Load: 3, N: 1}) {
		t.Errorf("old version after the new one = %+v, want a fresh load", a)
	}
	if a := get(t, "2"); a != (answer{V: 2, Load: 2, N: n + 2}) {
		t.Errorf("new version after the old one = %+v, want it still cached", a)
	}
}

func TestRequireResolvesBesideFunction(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	modules := filepath.Join(filepath.Dir(r.appDir), "modules") // stands in for the node's shared module store

	dir := r.deploy(t, "deps", 1, `var fake = require('fake-mod');
var scoped = require('@scope/pkg');
var helper = require('./helper');
var linked = require('linked');
module.exports = function (cb) {
	cb(null, { fake: fake.name, scoped: scoped, helper: helper(), linked: linked, resolved: require.resolve('fake-mod') });
};`)
	writeFile(t, filepath.Join(dir, "helper.js"), `module.exports = function () { return 'helper beside function.js'; };`)
	writeFile(t, filepath.Join(dir, "node_modules", "fake-mod", "package.json"), `{"name":"fake-mod","version":"1.0.0","main":"lib/main.js"}`)
	writeFile(t, filepath.Join(dir, "node_modules", "fake-mod", "lib", "main.js"), `exports.name = 'fake-mod from deps/1';`)
	writeFile(t, filepath.Join(dir, "node_modules", "@scope", "pkg", "index.js"), `module.exports = 'scoped package';`)
	// As in production: node_modules holds a symlink into the module store, and the linked package's own
	// dependency resolves from its real location.
	store := filepath.Join(modules, "linked", "2.0.0", "node_modules")
	writeFile(t, filepath.Join(store, "linked", "index.js"), `module.exports = 'linked + ' + require('linked-dep');`)
	writeFile(t, filepath.Join(store, "linked-dep", "index.js"), `module.exports = 'its own dependency';`)
	if err := os.Symlink(filepath.Join(store, "linked"), filepath.Join(dir, "node_modules", "linked")); err != nil {
		t.Fatal(err)
	}

	other := r.deploy(t, "other", 1, `var fake = require('fake-mod'); module.exports = function (cb) { cb(null, fake.name); };`)
	writeFile(t, filepath.Join(other, "node_modules", "fake-mod", "index.js"), `exports.name = 'fake-mod from other/1';`)

	// import() goes through node's own loader, relative to the function file too (ESM-only packages).
	esm := r.deploy(t, "esm", 1, `module.exports = function (cb) {
	import('esm-only').then(function (m) { cb(null, m.default); }, cb);
};`)
	writeFile(t, filepath.Join(esm, "node_modules", "esm-only", "package.json"), `{"name":"esm-only","type":"module","exports":"./index.js"}`)
	writeFile(t, filepath.Join(esm, "node_modules", "esm-only", "index.js"), `export default 'loaded through import()';`)

	r.deploy(t, "nodeps", 1, `var fake = require('fake-mod'); module.exports = function (cb) { cb(null, fake.name); };`)

	got := r.do(t, call{fn: "deps"})
	got.expect(t, 200, "webtask")
	equalJSON(t, got.body, fmt.Sprintf(`{"fake":"fake-mod from deps/1","scoped":"scoped package","helper":"helper beside function.js","linked":"linked + its own dependency","resolved":%q}`,
		filepath.Join(dir, "node_modules", "fake-mod", "lib", "main.js")))

	got = r.do(t, call{fn: "other"})
	got.expect(t, 200, "webtask")
	equalJSON(t, got.body, `"fake-mod from other/1"`)

	got = r.do(t, call{fn: "esm"})
	got.expect(t, 200, "webtask")
	equalJSON(t, got.body, `"loaded through import()"`)

	// Resolution never falls back to another function's node_modules.
	got = r.do(t, call{fn: "nodeps"})
	got.expect(t, 400, "compiler")
	if msg, _ := got.object(t)["error"].(string); !strings.Contains(msg, "Cannot find module 'fake-mod'") {
		t.Errorf("error = %q", msg)
	}
}

func TestInvalidFunctionHeadersAreRejected(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "ok", 1, `module.exports = function (cb) { cb(null, 'ok'); };`)
	// Targets a traversal would reach: they answer 200 if the runner ever loads them.
	pwned := `module.exports = function (cb) { cb(null, 'pwned'); };`
	for _, d := range []string{filepath.Join(r.appDir, "evil", "1"), filepath.Join(r.appDir, "functions", "ok", "evil")} {
		writeFile(t, filepath.Join(d, "function.js"), pwned)
		writeFile(t, filepath.Join(d, "config.json"), `{"tenant":"acme","name":"ok","version":1,"secrets":{},"meta":{}}`)
	}

	long := strings.Repeat("a", 65)
	cases := []struct {
		name         string
		fn           string
		version      string // "" means a valid "1"
		emptyVersion bool
		noVersion    bool
	}{
		{name: "dot-dot name", fn: "../evil"},
		{name: "bare dot-dot", fn: ".."},
		{name: "dot", fn: "."},
		{name: "nested traversal", fn: "ok/../../evil"},
		{name: "slash", fn: "ok/1"},
		{name: "backslash", fn: `ok\..`},
		{name: "encoded slash", fn: "ok%2F..%2Fevil"},
		{name: "absolute", fn: "/etc/passwd"},
		{name: "empty name", fn: ""},
		{name: "at sign in name", fn: "ok@2"},
		{name: "leading dash", fn: "-ok"},
		{name: "leading underscore", fn: "_ok"},
		{name: "space", fn: "o k"},
		{name: "65 characters", fn: long},
		{name: "two names", fn: "ok, ok"},
		{name: "version traversal", fn: "ok", version: "../../evil/1"},
		{name: "version evil dir", fn: "ok", version: "evil"},
		{name: "version zero", fn: "ok", version: "0"},
		{name: "negative version", fn: "ok", version: "-1"},
		{name: "fractional version", fn: "ok", version: "1.0"},
		{name: "leading zero", fn: "ok", version: "01"},
		{name: "exponent", fn: "ok", version: "1e0"},
		{name: "hex", fn: "ok", version: "0x1"},
		{name: "unsafe integer", fn: "ok", version: "9007199254740993"},
		{name: "empty version", fn: "ok", emptyVersion: true},
		{name: "missing version", fn: "ok", noVersion: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := call{fn: tc.fn, version: tc.version, noVersion: tc.noVersion, target: "/api/run/acme/x"}
			if tc.emptyVersion {
				c.header = map[string]string{"X-Wharf-Route": "ok@"}
			}
			got := r.do(t, c)
			got.expect(t, 400, "proxy")
			got.expectJSONType(t)
			equalJSON(t, got.body, `{"code":400,"error":"`+msgInvalid+`"}`)
		})
	}
	t.Run("64 characters are fine", func(t *testing.T) {
		t.Parallel()
		name := strings.Repeat("b", 64)
		r.deploy(t, name, 1, `module.exports = function (cb) { cb(null, 'long name'); };`)
		got := r.do(t, call{fn: name})
		got.expect(t, 200, "webtask")
	})
	t.Run("control", func(t *testing.T) {
		t.Parallel()
		got := r.do(t, call{fn: "ok"})
		got.expect(t, 200, "webtask")
		equalJSON(t, got.body, `"ok"`)
	})
}

func TestNotProvisioned(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	fnDir := func(name string) string { return filepath.Join(r.appDir, "functions", name, "1") }
	writeFile(t, filepath.Join(fnDir("codeonly"), "function.js"), `module.exports = function (cb) { cb(null, 1); };`)
	writeFile(t, filepath.Join(fnDir("configonly"), "config.json"), `{"tenant":"acme","name":"configonly","version":1}`)
	writeFile(t, filepath.Join(fnDir("badjson"), "function.js"), `module.exports = function (cb) { cb(null, 1); };`)
	writeFile(t, filepath.Join(fnDir("badjson"), "config.json"), `{"tenant":`)
	r.deploy(t, "mismatch", 1, `module.exports = function (cb) { cb(null, 1); };`, func(c map[string]any) { c["name"] = "someone-else" })
	r.deploy(t, "notenant", 1, `module.exports = function (cb) { cb(null, 1); };`, withoutKeys("tenant"))

	notProvisioned := `{"code":500,"error":"` + msgNotProvisioned + `"}`
	cases := []struct {
		name, fn, version string
		want              string // exact body, or "" for "configuration is invalid"
	}{
		{"nothing", "absent", "1", notProvisioned},
		{"other version", "codeonly", "2", notProvisioned},
		{"code without config", "codeonly", "1", notProvisioned},
		{"config without code", "configonly", "1", notProvisioned},
		{"invalid config JSON", "badjson", "1", ""},
		{"config for another function", "mismatch", "1", ""},
		{"config without tenant", "notenant", "1", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := r.do(t, call{fn: tc.fn, version: tc.version})
			got.expect(t, 500, "proxy")
			got.expectJSONType(t)
			if tc.want != "" {
				equalJSON(t, got.body, tc.want)
				return
			}
			if msg := got.object(t)["error"]; msg != "Function configuration is invalid." {
				t.Errorf("error = %v", msg)
			}
		})
	}

	// Missing files are not remembered: once the host writes them the function runs.
	r.deploy(t, "absent", 1, `module.exports = function (cb) { cb(null, 'now here'); };`)
	got := r.do(t, call{fn: "absent"})
	got.expect(t, 200, "webtask")
	equalJSON(t, got.body, `"now here"`)
}

func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	delay := `Math.floor(Math.random() * 40)`
	r.deploy(t, "alpha", 1, `module.exports = function (ctx, cb) {
		var q = ctx.query;
		setTimeout(function () { cb(null, { fn: 'alpha', n: q.n, id: ctx.id, body: ctx.body }); }, `+delay+`);
	};`)
	r.deploy(t, "beta", 1, `var calls = 0; module.exports = function (ctx, cb) {
		calls++;
		setImmediate(function () { setTimeout(function () { cb(null, { fn: 'beta', n: ctx.query.n, id: ctx.id, body: ctx.body }); }, `+delay+`); });
	};`)
	r.deploy(t, "gamma", 1, `module.exports = function (ctx, req, res) {
		var chunks = [];
		req.on('data', function (c) { chunks.push(c); });
		req.on('end', function () {
			setTimeout(function () {
				res.setHeader('content-type', 'application/json');
				res.end(JSON.stringify({ fn: 'gamma', n: ctx.query.n, id: ctx.id, body: JSON.parse(Buffer.concat(chunks).toString()) }));
			}, `+delay+`);
		});
	};`)

	const n = 50
	fns := []string{"alpha", "beta", "gamma"}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn := fns[i%len(fns)]
			id := fmt.Sprintf("req-%d", i)
			body := fmt.Sprintf(`{"i":%d}`, i)
			rep, err := r.send(context.Background(), call{
				fn: fn, path: fmt.Sprintf("?n=%d", i), contentType: "application/json", body: body,
				header: map[string]string{"X-Request-Id": id},
			})
			if err != nil {
				errs <- fmt.Errorf("request %d: %w", i, err)
				return
			}
			var got struct {
				Fn, N, ID string
				Body      struct{ I int }
			}
			if rep.status != 200 || json.Unmarshal(rep.body, &got) != nil {
				errs <- fmt.Errorf("request %d: status %d body %s", i, rep.status, rep.body)
				return
			}
			if got.Fn != fn || got.N != strconv.Itoa(i) || got.ID != id || got.Body.I != i {
				errs <- fmt.Errorf("request %d to %s got someone else's answer: %s", i, fn, rep.body)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAsyncExceptionAnswersInFlightAndExits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		boom string
	}{
		{"throw in a timer", `module.exports = function (ctx, cb) { setTimeout(function () { throw new Error('async-kaboom'); }, 10); };`},
		{"unhandled rejection", `module.exports = function (ctx, cb) { Promise.reject(new Error('async-kaboom')); };`},
		{"throw in a 3-argument event handler", `module.exports = function (ctx, req, res) {
			req.on('data', function () {});
			req.on('end', function () { throw new Error('async-kaboom'); });
		};`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startRunner(t)
			// In-flight requests of other functions, in both forms, that would otherwise never be answered.
			r.deploy(t, "hang", 1, `module.exports = function (ctx, cb) { console.log('hang-started ' + ctx.id); };`)
			r.deploy(t, "hang3", 1, `module.exports = function (ctx, req, res) { res.write('partial'); console.log('hang3-started ' + ctx.id); };`)
			r.deploy(t, "quiet3", 1, `module.exports = function (ctx, req, res) { console.log('quiet3-started ' + ctx.id); };`)
			r.deploy(t, "boom", 1, tc.boom)

			type result struct {
				name string
				rep  reply
				err  error
			}
			results := make(chan result, 2)
			for _, fn := range []string{"hang", "quiet3"} {
				go func() {
					rep, err := r.send(context.Background(), call{fn: fn, header: map[string]string{"X-Request-Id": fn + "-id"}})
					results <- result{fn, rep, err}
				}()
			}
			// A response already started cannot become a 500: that connection is cut instead.
			hang3Err := make(chan error, 1)
			go func() {
				_, err := r.send(context.Background(), call{fn: "hang3", header: map[string]string{"X-Request-Id": "hang3-id"}})
				hang3Err <- err
			}()
			r.stdout.waitFor(t, "hang-started hang-id", 10*time.Second)
			r.stdout.waitFor(t, "quiet3-started quiet3-id", 10*time.Second)
			r.stdout.waitFor(t, "hang3-started hang3-id", 10*time.Second)

			check := func(name string, rep reply) {
				t.Helper()
				if rep.status != 500 {
					t.Errorf("%s: status %d, body %s", name, rep.status, rep.body)
					return
				}
				rep.expectJSONType(t)
				var body map[string]any
				if err := json.Unmarshal(rep.body, &body); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if body["code"] != float64(500) || body["error"] != msgAsyncThrow {
					t.Errorf("%s: body %s", name, rep.body)
				}
				if d, _ := body["details"].(string); !strings.Contains(d, "async-kaboom") {
					t.Errorf("%s: details %q", name, d)
				}
			}
			boom, err := r.send(context.Background(), call{fn: "boom"})
			if err != nil {
				t.Fatalf("boom request: %v", err)
			}
			check("boom", boom)
			for i := 0; i < 2; i++ {
				select {
				case res := <-results:
					if res.err != nil {
						t.Errorf("%s: %v", res.name, res.err)
						continue
					}
					check(res.name, res.rep)
				case <-time.After(10 * time.Second):
					t.Fatal("an in-flight request was not answered")
				}
			}
			select {
			case err := <-hang3Err:
				if err == nil {
					t.Errorf("a response the code had started was completed instead of cut")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the started response was left hanging")
			}

			if code := r.waitExit(t, 10*time.Second); code == 0 {
				t.Errorf("runner exited with code 0 after an asynchronous exception")
			}
			if !strings.Contains(r.stderr.String(), "async-kaboom") {
				t.Errorf("the exception was not logged to stderr:\n%s", r.stderr)
			}
		})
	}
}

func TestAbortedRequestsDoNotLeakOrCrash(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "slow", 1, `module.exports = function (ctx, cb) {
		console.log('slow-started');
		setTimeout(function () { cb(null, 'too late'); console.log('slow-called-back'); }, 300);
	};`)
	r.deploy(t, "slow3", 1, `module.exports = function (ctx, req, res) {
		console.log('slow3-started');
		setTimeout(function () { res.write('late'); res.end('r'); res.end('again'); console.log('slow3-wrote'); }, 300);
	};`)
	r.deploy(t, "never", 1, `module.exports = function (ctx, cb) { console.log('never-started'); };`)
	r.deploy(t, "echo", 1, `module.exports = function (ctx, cb) { console.log('echo-called'); cb(null, ctx.body); };`)

	for _, fn := range []string{"slow", "slow3", "never"} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := r.send(ctx, call{fn: fn})
			done <- err
		}()
		r.stdout.waitFor(t, fn+"-started", 10*time.Second)
		cancel()
		if err := <-done; err == nil {
			t.Fatalf("%s: request was not aborted", fn)
		}
	}

	// A client that disappears halfway through its body: the function must not run with half a body.
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/run/acme/echo HTTP/1.1\r\nHost: x\r\nX-Wharf-Route: echo@1\r\n"+
		"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\":")
	time.Sleep(100 * time.Millisecond)
	conn.Close()

	r.stdout.waitFor(t, "slow-called-back", 10*time.Second)
	r.stdout.waitFor(t, "slow3-wrote", 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	r.assertAlive(t)
	if strings.Contains(r.stdout.String(), "echo-called") {
		t.Errorf("function ran with a truncated body")
	}
	if s := r.stderr.String(); strings.Contains(s, "unhandled") {
		t.Errorf("stderr reports an unhandled exception:\n%s", s)
	}
	got := r.do(t, call{fn: "echo", contentType: "application/json", body: `{"whole":true}`})
	got.expect(t, 200, "webtask")
	equalJSON(t, got.body, `{"whole":true}`)

	// The runner leaves on SIGTERM as soon as nothing is in flight: an aborted request still counted would keep
	// it alive. A module-level timer keeps node's event loop busy, so only the runner's own bookkeeping can end it.
	r.deploy(t, "timer", 1, `setInterval(function () {}, 60000); module.exports = function (cb) { cb(null, 'armed'); };`)
	r.do(t, call{fn: "timer"}).expect(t, 200, "webtask")
	r.client.CloseIdleConnections()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.waitExit(t, 3*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

func TestSIGTERMWaitsForInFlight(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "slow", 1, `module.exports = function (ctx, cb) {
		console.log('slow-started');
		setTimeout(function () { cb(null, 'finished'); }, 300);
	};`)
	type result struct {
		rep reply
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := r.send(context.Background(), call{fn: "slow"})
		done <- result{rep, err}
	}()
	r.stdout.waitFor(t, "slow-started", 10*time.Second)
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("in-flight request failed during shutdown: %v", res.err)
	}
	res.rep.expect(t, 200, "webtask")
	equalJSON(t, res.rep.body, `"finished"`)
	if code := r.waitExit(t, 5*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// Invariant: connections are kept alive and reused, with no idle timeout of
// the runner's own announced (the host's pool is what closes idle ones).
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "ka", 1, `module.exports = function (cb) { cb(null, 'ka'); };`)
	r.client.CloseIdleConnections()
	reused := 0
	for i := 0; i < 3; i++ {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				reused++
			}
		}}
		req, err := r.request(httptrace.WithClientTrace(context.Background(), trace), call{fn: "ka"})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// No idle timeout of the runner's own (the host's pool closes idle
		// connections), so none is announced.
		if ka := resp.Header.Values("Keep-Alive"); len(ka) != 0 || resp.Close {
			t.Errorf("Keep-Alive = %q, close %v: want a plain keep-alive connection", ka, resp.Close)
		}
	}
	if reused != 2 {
		t.Errorf("connection reused %d times, want 2", reused)
	}
}

// Invariant: a connection keeps serving after requests without a body, whose
// unread (empty) request streams the runner leaves alone: pipelined requests,
// with and without bodies, are all answered, in order, on one connection.
func TestPipelinedRequestsWithoutBody(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "get", 1, `module.exports = function (ctx, cb) { cb(null, { q: ctx.query.n, raw: ctx.body_raw }); };`)
	r.deploy(t, "rr", 1, `module.exports = function (ctx, req, res) { res.end('rr' + ctx.query.n); };`)
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := func(fn, n string) string {
		return "GET /api/run/acme/" + fn + "?n=" + n + " HTTP/1.1\r\nHost: x\r\nX-Wharf-Route: " + fn + "@1\r\n"
	}
	body := `{"b":1}`
	fmt.Fprint(conn, head("get", "1")+"\r\n"+head("get", "2")+"Content-Length: 0\r\n\r\n"+
		strings.Replace(head("get", "3"), "GET", "POST", 1)+fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)+
		head("rr", "4")+"\r\n"+head("get", "5")+"\r\n")
	br := bufio.NewReader(conn)
	want := []string{`{"q":"1","raw":""}`, `{"q":"2","raw":""}`, `{"q":"3","raw":"{\"b\":1}"}`, `rr4`, `{"q":"5","raw":""}`}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, w := range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(b) != w {
			t.Fatalf("response %d: %d %q (%v), want 200 %q", i+1, resp.StatusCode, b, err, w)
		}
	}
}

// Invariant: the start-up warm-up leaves nothing behind: it has finished when
// the ready probe first says yes, and its functions are unreachable after it.
func TestWarmUpLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	r := startRunner(t) // returns once the ready probe answered 200
	r.stderr.waitFor(t, "warmed up in", 5*time.Second)
	for _, name := range []string{"one", "two", "three", "four"} {
		rep := r.do(t, call{method: "POST", fn: name, version: "1", path: "/api/run/wharf/" + name, body: "{}"})
		rep.expect(t, 500, "proxy")
		if !strings.Contains(string(rep.body), "not provisioned") {
			t.Fatalf("warm-up function %s still reachable: %s", name, rep.body)
		}
	}
	// The real tree is served after the warm-up.
	r.deploy(t, "one", 1, `module.exports = cb => cb(null, "tenant code")`)
	r.do(t, call{method: "GET", fn: "one", version: "1", path: "/api/run/acme/one"}).expect(t, 200, "webtask")
}
