package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wharfhq/wharf/client"
)

// fakeAPI plays the node's side of the documented API for the commands
// that a real node cannot exercise yet (module builds): the CLI's own
// integration test runs against a real node.
type fakeAPI struct {
	mu          sync.Mutex
	puts        []client.FunctionSpec
	polls       map[string]int
	failModule  string // this module's build fails
	noModuleAPI bool   // GET /api/v1/modules answers 404 (no module builder)
	listPolls   int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer good" {
		w.WriteHeader(401)
		w.Write([]byte(`{"error":"The token is not valid.","code":"unauthorized"}`))
		return
	}
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	p := r.URL.EscapedPath()
	switch {
	case p == "/api/v1/whoami":
		reply(200, map[string]any{"admin": false, "tenant": "acme", "token_id": "t1"})
	case r.Method == "PUT" && p == "/api/v1/tenants/acme/functions/hook":
		var spec client.FunctionSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			reply(400, map[string]string{"error": "Bad JSON.", "code": "bad_json"})
			return
		}
		f.puts = append(f.puts, spec)
		st := map[string]any{"name": "hook", "version": len(f.puts), "status": "ready", "modules": []any{}, "updated_at": "2026-01-01T00:00:00Z"}
		var mods []any
		for _, n := range keys(spec.Dependencies) {
			mods = append(mods, map[string]string{"name": n, "version": spec.Dependencies[n], "status": "building"})
		}
		if len(mods) > 0 {
			st["status"], st["modules"] = "building", mods
		}
		reply(201, st)
	case strings.HasPrefix(p, "/api/v1/modules/"):
		if f.noModuleAPI {
			reply(404, map[string]string{"error": "Not found.", "code": "not_found"})
			return
		}
		mod := strings.TrimPrefix(p, "/api/v1/modules/")
		f.polls[mod]++
		status := "building"
		if f.polls[mod] >= 2 {
			status = "ready"
			if f.failModule != "" && strings.HasPrefix(mod, f.failModule+"@") {
				reply(200, map[string]string{"status": "failed", "log": "npm ERR! 404 Not Found"})
				return
			}
		}
		reply(200, map[string]string{"status": status})
	case r.Method == "GET" && p == "/api/v1/tenants/acme/functions":
		f.listPolls++
		status := "building"
		if f.listPolls >= 2 {
			status = "ready"
		}
		reply(200, []map[string]any{{"name": "hook", "version": len(f.puts), "status": status, "updated_at": "2026-01-01T00:00:00Z"}})
	default:
		reply(404, map[string]string{"error": "Not found.", "code": "not_found"})
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the client with a private profile and the given environment.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code := Run(context.Background(), args, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: getenv})
	return result{code, out.String(), errOut.String()}
}

// project writes a function file and files beside it.
func project(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newFake(t *testing.T, f *fakeAPI) (*httptest.Server, map[string]string) {
	t.Helper()
	f.polls = map[string]int{}
	api := httptest.NewServer(f)
	t.Cleanup(api.Close)
	reg, _ := fakeRegistry(t)
	return api, map[string]string{"WHARF_CONFIG": filepath.Join(t.TempDir(), "profile.json"),
		"WHARF_URL": api.URL, "WHARF_TOKEN": "good", "WHARF_NPM_REGISTRY": reg.URL}
}

// Invariant: deploy sends package.json's ranges resolved to exact versions
// (--dep winning), the secrets of --secrets-file with --secret winning, the
// timeout in ms, and shows each module's build until all are ready.
func TestDeployResolvesAndShowsBuilds(t *testing.T) {
	f := &fakeAPI{}
	_, env := newFake(t, f)
	dir := project(t, map[string]string{
		"hook.js":      "module.exports = cb => cb(null, 1)",
		"package.json": `{"name":"x","dependencies":{"ms":"^2.0.0","lodash":"^4.17.0"},"devDependencies":{"jest":"^29"}}`,
		".env":         "A=from-file\nB=\"two\nlines\"\n",
	})
	r := runCLI(t, env, "fn", "deploy", "hook", filepath.Join(dir, "hook.js"), "--dep", "@types/node@^20",
		"--dep", "lodash@4.17.20", "--secrets-file", filepath.Join(dir, ".env"), "--secret", "A=from-flag", "--timeout", "2500ms")
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if len(f.puts) != 1 {
		t.Fatalf("%d PUTs", len(f.puts))
	}
	got := f.puts[0]
	if want := map[string]string{"ms": "2.1.3", "lodash": "4.17.20", "@types/node": "20.11.5"}; !maps.Equal(got.Dependencies, want) {
		t.Fatalf("dependencies sent %v, want %v", got.Dependencies, want)
	}
	if want := map[string]string{"A": "from-flag", "B": "two\nlines"}; !maps.Equal(got.Secrets, want) {
		t.Fatalf("secrets sent %v", got.Secrets)
	}
	if got.TimeoutMS != 2500 || got.Code != "module.exports = cb => cb(null, 1)" {
		t.Fatalf("sent %+v", got)
	}
	for _, want := range []string{"Resolved ms@^2.0.0 to 2.1.3", "Resolved @types/node@^20 to 20.11.5",
		"Building 3 module(s): @types/node@20.11.5, lodash@4.17.20, ms@2.1.3", "ms@2.1.3 ready"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr+r.stdout, "from-flag") || strings.Contains(r.stderr+r.stdout, "from-file") {
		t.Fatal("a secret value was printed")
	}
	if want := "Deployed hook version 1 (ready): "; !strings.HasPrefix(r.stdout, want) || !strings.HasSuffix(strings.TrimSpace(r.stdout), "/run/acme/hook") {
		t.Fatalf("stdout %q", r.stdout)
	}

	// -o json prints the node's answer.
	r = runCLI(t, env, "fn", "deploy", "hook", filepath.Join(dir, "hook.js"), "-o", "json", "--wait", "10s")
	var st client.FunctionStatus
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.Version != 2 || st.Status != "ready" {
		t.Fatalf("json deploy: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// Invariant: a failed module build fails the deploy with its log; without
// a module endpoint the function's own status is followed instead.
func TestDeployBuildOutcomes(t *testing.T) {
	f := &fakeAPI{failModule: "ms"}
	_, env := newFake(t, f)
	dir := project(t, map[string]string{"hook.js": "x", "package.json": `{"dependencies":{"ms":"2.1.3"}}`})
	r := runCLI(t, env, "fn", "deploy", "hook", filepath.Join(dir, "hook.js"))
	if r.code != 1 || !strings.Contains(r.stderr, "npm ERR! 404 Not Found") ||
		!strings.HasSuffix(r.stderr, "wharf: Module ms@2.1.3 failed to build.\n") {
		t.Fatalf("failed build: exit %d stderr %q", r.code, r.stderr)
	}

	f2 := &fakeAPI{noModuleAPI: true}
	_, env2 := newFake(t, f2)
	r = runCLI(t, env2, "fn", "deploy", "hook", filepath.Join(dir, "hook.js"))
	if r.code != 0 || !strings.Contains(r.stdout, "(ready)") || f2.listPolls < 2 {
		t.Fatalf("fallback to the function's status: exit %d polls %d\n%s%s", r.code, f2.listPolls, r.stdout, r.stderr)
	}
}

// Invariant: bad input fails before anything is sent, in one sentence, and
// never echoes a secret.
func TestDeployRefusesBadInput(t *testing.T) {
	f := &fakeAPI{}
	_, env := newFake(t, f)
	good := project(t, map[string]string{"hook.js": "x"})
	cases := []struct {
		name  string
		files map[string]string
		args  []string
		code  int
		msg   string
	}{
		{"git dependency", map[string]string{"package.json": `{"dependencies":{"lib":"git+https://example.com/lib.git"}}`}, nil, 1,
			`wharf: Dependency lib is "git+https://example.com/lib.git", which is not a registry version; Wharf installs versions from the npm registry only.`},
		{"unknown package", map[string]string{"package.json": `{"dependencies":{"nope":"^1"}}`}, nil, 1, "wharf: Package nope does not exist in the npm registry at"},
		{"no matching version", nil, []string{"--dep", "ms@^7"}, 1, `wharf: No version of ms matches "^7" (latest is 2.1.3).`},
		{"package.json not JSON", map[string]string{"package.json": `{"dependencies":`}, nil, 1, "package.json is not valid JSON"},
		{"dependency not a string", map[string]string{"package.json": `{"dependencies":{"ms":2}}`}, nil, 1, "the version of dependency ms is not a string"},
		{"secret without =", nil, []string{"--secret", "TOPSECRETVALUE"}, 2, "wharf: --secret needs KEY=VALUE with a KEY of letters, digits and _."},
		{"bad secrets file", map[string]string{".env": "A='unclosed TOPSECRETVALUE"}, []string{"--secrets-file", ".env"}, 1, "the value of A has no closing '"},
		{"negative timeout", nil, []string{"--timeout", "-1s"}, 2, "--timeout must be a positive duration"},
		{"unknown flag", nil, []string{"--frobnicate"}, 2, "wharf: Fn deploy: flag provided but not defined: -frobnicate."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := project(t, map[string]string{"hook.js": "x"})
			for n, content := range c.files {
				os.WriteFile(filepath.Join(dir, n), []byte(content), 0o600)
			}
			args := []string{"fn", "deploy", "hook", filepath.Join(dir, "hook.js")}
			for _, a := range c.args {
				if a == ".env" {
					a = filepath.Join(dir, a)
				}
				args = append(args, a)
			}
			before := len(f.puts)
			r := runCLI(t, env, args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.msg) || strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want %d and %q on one line", r.code, r.stderr, c.code, c.msg)
			}
			if strings.Contains(r.stderr, "TOPSECRETVALUE") {
				t.Fatal("a secret was echoed")
			}
			if len(f.puts) != before {
				t.Fatal("a request was sent despite bad input")
			}
		})
	}
	if r := runCLI(t, env, "fn", "deploy", "hook", filepath.Join(good, "missing.js")); r.code != 1 || !strings.Contains(r.stderr, "cannot read") && !strings.Contains(r.stderr, "Cannot read") {
		t.Fatalf("missing file: %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "fn", "deploy", "hook"); r.code != 2 || r.stderr != "wharf: Usage: wharf fn deploy NAME FILE.\n" {
		t.Fatalf("missing argument: %d %q", r.code, r.stderr)
	}
}

// Invariant: login checks the token, saves it in a 0600 file in a 0700
// directory, and later commands use it unless WHARF_* says otherwise.
func TestLoginProfile(t *testing.T) {
	f := &fakeAPI{}
	api, _ := newFake(t, f)
	dir := filepath.Join(t.TempDir(), "conf", "wharf")
	profile := filepath.Join(dir, "profile.json")
	env := map[string]string{"WHARF_CONFIG": profile}

	if r := runCLI(t, env, "fn", "ls"); r.code != 1 || !strings.Contains(r.stderr, "Not logged in: run `wharf login URL TOKEN`") {
		t.Fatalf("before login: %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "login", api.URL, "bad"); r.code != 1 || !strings.Contains(r.stderr, "does not accept this token") {
		t.Fatalf("bad token: %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(profile); err == nil {
		t.Fatal("a refused login saved a profile")
	}
	if r := runCLI(t, env, "login", "ftp://x", "good"); r.code != 1 || !strings.Contains(r.stderr, "is not a Wharf URL") {
		t.Fatalf("bad URL: %d %q", r.code, r.stderr)
	}
	r := runCLI(t, env, "login", api.URL+"/", "good")
	if r.code != 0 || !strings.Contains(r.stdout, "as tenant acme") {
		t.Fatalf("login: %d %s %s", r.code, r.stdout, r.stderr)
	}
	st, err := os.Stat(profile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("profile mode %v, %v", st.Mode().Perm(), err)
	}
	if dst, _ := os.Stat(dir); dst.Mode().Perm() != 0o700 {
		t.Fatalf("profile directory mode %v", dst.Mode().Perm())
	}
	p, _ := loadProfile(profile)
	if p.URL != api.URL || p.Token != "good" || p.Tenant != "acme" || p.Admin {
		t.Fatalf("profile %+v", p)
	}
	if r := runCLI(t, env, "fn", "ls", "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"name": "hook"`) {
		t.Fatalf("with the profile: %d %s %s", r.code, r.stdout, r.stderr)
	}
	env["WHARF_TOKEN"] = "revoked"
	if r := runCLI(t, env, "fn", "ls"); r.code != 1 || r.stderr != "wharf: The token is not valid.\n" {
		t.Fatalf("WHARF_TOKEN must override the profile: %d %q", r.code, r.stderr)
	}
	delete(env, "WHARF_TOKEN")
	if r := runCLI(t, env, "fn", "ls", "-o", "yaml"); r.code != 2 || !strings.Contains(r.stderr, "-o must be table or json") {
		t.Fatalf("bad -o: %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "logout"); r.code != 0 {
		t.Fatalf("logout: %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, env, "fn", "ls"); r.code != 1 || !strings.Contains(r.stderr, "Not logged in") {
		t.Fatalf("after logout: %d %q", r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	env := map[string]string{"WHARF_CONFIG": filepath.Join(t.TempDir(), "p.json")}
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"fn"}, "wharf: Usage: wharf fn deploy|get|invoke|ls|rm|rollback|versions.\n"},
		{[]string{"fn", "explode"}, "wharf: Unknown command \"wharf fn explode\" (try deploy, get, invoke, ls, rm, rollback, versions).\n"},
		{[]string{"tenant", "create"}, "wharf: Usage: wharf tenant create NAME.\n"},
		{[]string{"tenant", "ls", "extra"}, "wharf: Tenant ls takes no arguments (got \"extra\").\n"},
		{[]string{"logs", "--tail", "-5"}, "wharf: --tail must be between 0 and 10000.\n"},
		{[]string{"fn", "rollback", "hook", "latest", "--url", "http://127.0.0.1:1", "--token", "x", "--tenant", "acme"}, "wharf: VERSION must be a version number such as 3, not \"latest\".\n"},
	}
	for _, c := range cases {
		r := runCLI(t, env, c.args...)
		if r.code != 2 || r.stderr != c.msg {
			t.Errorf("%q: exit %d %q, want 2 %q", c.args, r.code, r.stderr, c.msg)
		}
	}
	if r := runCLI(t, env, "fn", "ls", "--url", "http://127.0.0.1:1", "--token", "x", "--tenant", "acme"); r.code != 1 ||
		!strings.HasPrefix(r.stderr, "wharf: Cannot reach the Wharf node at http://127.0.0.1:1: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("unreachable node: %d %q", r.code, r.stderr)
	}
}
