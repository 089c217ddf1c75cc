package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wharfhq/wharf/integration/wharftest"
)

// cliEnv runs the built wharf binary as a user would, with a private home
// and profile and nothing of the developer's WHARF_* environment.
type cliEnv struct {
	t   *testing.T
	bin string
	env map[string]string
}

func newCLI(t *testing.T) *cliEnv {
	t.Helper()
	bin, err := wharftest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	return &cliEnv{t: t, bin: bin, env: map[string]string{"HOME": home, "PATH": os.Getenv("PATH")}}
}

func (c *cliEnv) environ(extra map[string]string) []string {
	var out []string
	for k, v := range c.env {
		if _, over := extra[k]; !over {
			out = append(out, k+"="+v)
		}
	}
	for k, v := range extra {
		out = append(out, k+"="+v)
	}
	return out
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// run runs `wharf args...` to its end.
func (c *cliEnv) run(extra map[string]string, args ...string) cliResult {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.environ(extra)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("wharf %v: %v", args, err)
	}
	return cliResult{code, out.String(), errOut.String()}
}

// ok runs a command that must succeed.
func (c *cliEnv) ok(extra map[string]string, args ...string) string {
	c.t.Helper()
	r := c.run(extra, args...)
	if r.code != 0 {
		c.t.Fatalf("wharf %s: exit %d\nstdout %s\nstderr %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must fail with status code and one sentence
// on stderr containing msg.
func (c *cliEnv) fails(extra map[string]string, code int, msg string, args ...string) {
	c.t.Helper()
	r := c.run(extra, args...)
	if r.code != code || !strings.Contains(r.stderr, msg) || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "wharf: ") {
		c.t.Fatalf("wharf %s: exit %d stderr %q; want exit %d and one line with %q", strings.Join(args, " "), r.code, r.stderr, code, msg)
	}
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return v
}

// Invariant: the built `wharf` binary manages a real node end to end: login
// profile (0600) and environment overrides, tenants, tokens (a revoked one
// is refused at once), deploy with secrets from a .env file and flags,
// invoke, versions and rollback, logs (recent and followed live), tables by
// default and JSON with -o json, and every failure a non-zero exit with one
// sentence.
func TestCLIEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	c := newCLI(t)
	adminProfile := filepath.Join(t.TempDir(), "admin", "profile.json")
	admin := map[string]string{"WHARF_CONFIG": adminProfile}

	if out := c.ok(admin, "login", n.URL, n.AdminToken); !strings.Contains(out, "as the admin") {
		t.Fatalf("admin login: %s", out)
	}
	if st, err := os.Stat(adminProfile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("profile mode: %v %v", st, err)
	}
	created := decode[struct{ Name, Token string }](t, c.ok(admin, "tenant", "create", "acme", "-o", "json"))
	if created.Name != "acme" || !strings.HasPrefix(created.Token, "wht_") {
		t.Fatalf("tenant create: %+v", created)
	}
	if out := c.ok(admin, "tenant", "create", "globex"); !strings.Contains(out, "Created tenant globex") || !strings.Contains(out, "wht_") {
		t.Fatalf("tenant create (table): %s", out)
	}
	if out := c.ok(admin, "tenant", "ls"); !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "acme") || !strings.Contains(out, "globex") {
		t.Fatalf("tenant ls: %s", out)
	}
	c.fails(admin, 1, `Tenant "acme" already exists.`, "tenant", "create", "acme")
	c.fails(admin, 1, "Tenant name \"Bad_Name\" is invalid", "tenant", "create", "Bad_Name")
	c.fails(admin, 2, "The admin token manages every tenant", "fn", "ls")

	// The tenant logs in with its own profile.
	tenant := map[string]string{"WHARF_CONFIG": filepath.Join(t.TempDir(), "acme", "profile.json")}
	if out := c.ok(tenant, "login", n.URL, created.Token); !strings.Contains(out, "as tenant acme") {
		t.Fatalf("tenant login: %s", out)
	}
	c.fails(tenant, 1, "does not accept this token", "login", n.URL, "wht_not-a-token")

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := write("hook.js", `module.exports = function (ctx, cb) {
  console.log('hook called with x=' + (ctx.body && ctx.body.x));
  cb(null, {v: 1, x: ctx.body && ctx.body.x, key: ctx.secrets.API_KEY, region: ctx.secrets.REGION});
}`)
	env := write(".env", "# secrets\nAPI_KEY=key-from-file\nREGION='eu-west'\n")
	out := c.ok(tenant, "fn", "deploy", "hook", v1, "--secrets-file", env, "--secret", "API_KEY=key-from-flag", "--timeout", "5s")
	if !strings.HasPrefix(out, "Deployed hook version 1 (ready): "+n.URL+"/run/acme/hook") {
		t.Fatalf("deploy: %s", out)
	}
	got := decode[map[string]any](t, c.ok(tenant, "fn", "invoke", "hook", "--data", `{"x":42}`))
	if got["v"] != float64(1) || got["x"] != float64(42) || got["key"] != "key-from-flag" || got["region"] != "eu-west" {
		t.Fatalf("invoke: %v", got)
	}
	fn := decode[struct {
		Version   int
		Code      string
		Secrets   []string
		TimeoutMS int `json:"timeout_ms"`
	}](t, c.ok(tenant, "fn", "get", "hook", "-o", "json"))
	if fn.Version != 1 || !strings.Contains(fn.Code, "hook called") || strings.Join(fn.Secrets, ",") != "API_KEY,REGION" || fn.TimeoutMS != 5000 {
		t.Fatalf("fn get: %+v", fn)
	}
	if out := c.ok(tenant, "fn", "get", "hook"); strings.Contains(out, "key-from") || !strings.Contains(out, "API_KEY, REGION (values are never shown)") {
		t.Fatalf("fn get (table): %s", out)
	}

	// A second version, then a rollback to the first as version 3.
	v2 := write("hook2.js", `module.exports = function (ctx, cb) { cb(null, {v: 2}) }`)
	if out := c.ok(tenant, "fn", "deploy", "hook", v2, "--secret", "API_KEY=k2"); !strings.Contains(out, "version 2") {
		t.Fatalf("second deploy: %s", out)
	}
	if got := decode[map[string]any](t, c.ok(tenant, "fn", "invoke", "hook")); got["v"] != float64(2) {
		t.Fatalf("after update: %v", got)
	}
	versions := decode[[]struct{ Version int }](t, c.ok(tenant, "fn", "versions", "hook", "-o", "json"))
	if len(versions) != 2 || versions[0].Version != 1 || versions[1].Version != 2 {
		t.Fatalf("versions: %+v", versions)
	}
	if out := c.ok(tenant, "fn", "versions", "hook"); !strings.HasPrefix(out, "VERSION") || strings.Count(out, "\n") != 3 {
		t.Fatalf("versions (table): %s", out)
	}
	if out := c.ok(tenant, "fn", "rollback", "hook", "1"); !strings.Contains(out, "it is now version 3") {
		t.Fatalf("rollback: %s", out)
	}
	if got := decode[map[string]any](t, c.ok(tenant, "fn", "invoke", "hook", "--data", `{"x":7}`)); got["v"] != float64(1) || got["key"] != "key-from-flag" {
		t.Fatalf("after rollback: %v", got)
	}
	list := decode[[]struct {
		Name, Status string
		Version      int
	}](t, c.ok(tenant, "fn", "ls", "-o", "json"))
	if len(list) != 1 || list[0].Name != "hook" || list[0].Version != 3 || list[0].Status != "ready" {
		t.Fatalf("fn ls: %+v", list)
	}

	// Logs: the recent lines carry the function and request id of each call.
	type logLine struct {
		Function  string `json:"function"`
		RequestID string `json:"request_id"`
		Level     string `json:"level"`
		Message   string `json:"message"`
		Time      time.Time
	}
	var lines []logLine
	// Polled gently: every poll reads the store, whose embedded form serves
	// one connection that the node's own work shares.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		lines = decode[[]logLine](t, c.ok(tenant, "logs", "--function", "hook", "-o", "json"))
		if len(lines) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs of hook after 30 s: %+v", lines)
		}
	}
	if lines[0].Message != "hook called with x=42" || lines[1].Message != "hook called with x=7" ||
		lines[0].Function != "hook" || lines[0].Level != "log" || lines[0].RequestID == "" || lines[0].RequestID == lines[1].RequestID ||
		time.Since(lines[0].Time) > time.Minute {
		t.Fatalf("logs: %+v", lines)
	}
	if out := c.ok(tenant, "logs"); !strings.Contains(out, "  hook  "+lines[1].RequestID+"  log    hook called with x=7") {
		t.Fatalf("logs (table):\n%s", out)
	}

	// logs -f prints a new line as it happens, and exits 0 on Ctrl-C.
	follow := exec.Command(c.bin, "logs", "-f", "--tail", "0")
	follow.Env = c.environ(tenant)
	pipe, _ := follow.StdoutPipe()
	var followErr bytes.Buffer
	follow.Stderr = &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Process.Kill()
	seen := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			seen <- sc.Text()
		}
		close(seen)
	}()
	deadline := time.After(15 * time.Second)
	invoked := 0
wait:
	for {
		select {
		case line := <-seen:
			if strings.Contains(line, "hook called with x=99") {
				break wait
			}
			t.Fatalf("logs -f printed an unexpected line: %s", line)
		case <-time.After(300 * time.Millisecond):
			// The stream may not be subscribed yet when the first call runs: call until a line comes.
			if invoked < 20 {
				c.ok(tenant, "fn", "invoke", "hook", "--data", `{"x":99}`)
				invoked++
			}
		case <-deadline:
			t.Fatalf("logs -f printed nothing for a new call; stderr: %s", followErr.String())
		}
	}
	_ = follow.Process.Signal(syscall.SIGINT)
	if err := follow.Wait(); err != nil {
		t.Fatalf("logs -f after Ctrl-C: %v (stderr %s)", err, followErr.String())
	}

	// Tokens: a second one works; once revoked it is refused at once.
	tok := decode[struct{ ID, Token string }](t, c.ok(tenant, "token", "create", "--description", "ci", "-o", "json"))
	withTok := map[string]string{"WHARF_CONFIG": tenant["WHARF_CONFIG"], "WHARF_TOKEN": tok.Token}
	c.ok(withTok, "fn", "ls")
	if out := c.ok(tenant, "token", "ls"); !strings.Contains(out, tok.ID) || !strings.Contains(out, "ci") || strings.Contains(out, tok.Token) {
		t.Fatalf("token ls: %s", out)
	}
	c.ok(tenant, "token", "rm", tok.ID)
	c.fails(withTok, 1, "The token is not valid.", "fn", "ls")

	// Failures: one sentence, non-zero.
	c.fails(tenant, 1, `Function "missing" not found in tenant "acme".`, "fn", "get", "missing")
	c.fails(tenant, 1, `Tenant "globex" not found.`, "fn", "ls", "--tenant", "globex")
	bad := write("bad.js", `module.exports = function (cb) { cb(new Error('nope')) }`)
	c.ok(tenant, "fn", "deploy", "bad", bad)
	c.fails(tenant, 1, "The function answered 400: Script returned an error (Error: nope).", "fn", "invoke", "bad")
	c.fails(tenant, 1, "Field \"code\" is required and must not be empty.", "fn", "deploy", "empty", write("empty.js", "  "))
	c.fails(tenant, 2, "Usage: wharf fn rollback NAME VERSION.", "fn", "rollback", "hook")

	c.ok(tenant, "fn", "rm", "hook")
	c.fails(tenant, 1, `The function answered 404: No function "hook" for tenant "acme".`, "fn", "invoke", "hook")
	c.ok(admin, "tenant", "rm", "acme")
	c.fails(tenant, 1, "The token is not valid.", "fn", "ls")
}
