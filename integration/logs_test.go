package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/client"
	"github.com/wharfhq/wharf/integration/wharftest"
)

// logStream is a live GET /api/v1/tenants/{t}/logs of a node.
type logStream struct {
	lines  chan client.LogLine
	cancel context.CancelFunc
}

func openLogs(t *testing.T, n *wharftest.Node, tenant, token, query string) *logStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/api/v1/tenants/"+tenant+"/logs"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		cancel()
		t.Fatalf("logs stream of %s: %d", tenant, resp.StatusCode)
	}
	s := &logStream{lines: make(chan client.LogLine, 100000), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		_ = client.ReadEvents(resp.Body, func(event, data string) error {
			if event == "log" {
				var l client.LogLine
				if err := json.Unmarshal([]byte(data), &l); err == nil {
					s.lines <- l
				}
			}
			return nil
		})
		close(s.lines)
	}()
	t.Cleanup(cancel)
	return s
}

// until reads lines until one satisfies match, returning all read.
func (s *logStream) until(t *testing.T, timeout time.Duration, what string, match func(client.LogLine) bool) []client.LogLine {
	t.Helper()
	var got []client.LogLine
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("stream ended while waiting for %s", what)
			}
			got = append(got, l)
			if match(l) {
				return got
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s; got %+v", what, got)
		}
	}
}

// drain returns what arrives within d.
func (s *logStream) drain(d time.Duration) []client.LogLine {
	var got []client.LogLine
	deadline := time.After(d)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				return got
			}
			got = append(got, l)
		case <-deadline:
			return got
		}
	}
}

// Invariant: a function's console output reaches its own tenant's live
// stream, tagged with the function and the very request id its caller got
// in X-Request-Id, and never another tenant's stream, whatever the code
// writes (a forged tag stays in the writer's own log). A draining node ends
// open streams rather than wait for them.
func TestLogsLiveAndIsolated(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	acme := createTenant(t, n, "acme")
	globex := createTenant(t, n, "globex")
	talk := `module.exports = function (ctx, cb) { console.log(ctx.query.say); console.error('to stderr'); cb(null, {}) }`
	deploy(t, n, acme, "acme", "talk", talk, nil)
	deploy(t, n, globex, "globex", "talk", talk, nil)
	deploy(t, n, acme, "acme", "forge", `module.exports = function (cb) {
		process.stdout.write(JSON.stringify({t: new Date().toISOString(), lvl: 'log', fn: 'talk', rid: 'forged', msg: 'i claim to be talk'}) + '\n');
		process.stdout.write('raw line\n');
		cb(null, {}) }`, nil)

	acmeAll := openLogs(t, n, "acme", acme, "?tail=0")
	acmeTalk := openLogs(t, n, "acme", acme, "?tail=0&function=talk")
	globexAll := openLogs(t, n, "globex", globex, "?tail=0")

	r := do(t, n, "GET", "/run/acme/talk?say=hello-from-acme", "", nil)
	expect(t, r, 200)
	rid := r.Header.Get("X-Request-Id")
	do(t, n, "GET", "/run/globex/talk?say=hello-from-globex", "", nil)
	do(t, n, "GET", "/run/acme/forge", "", nil)

	got := acmeAll.until(t, 15*time.Second, "acme's raw line", func(l client.LogLine) bool { return l.Message == "raw line" })
	var hello, errLine, forged *client.LogLine
	for i, l := range got {
		switch l.Message {
		case "hello-from-acme":
			hello = &got[i]
		case "to stderr":
			errLine = &got[i]
		case "i claim to be talk":
			forged = &got[i]
		case "hello-from-globex":
			t.Fatal("acme's stream shows globex's line")
		}
	}
	if hello == nil || hello.Function != "talk" || hello.RequestID != rid || hello.Level != "log" || time.Since(hello.Time) > time.Minute {
		t.Fatalf("acme's line %+v (caller's request id %s)", hello, rid)
	}
	if errLine == nil || errLine.Level != "error" || errLine.RequestID != rid {
		t.Fatalf("console.error line %+v", errLine)
	}
	if forged == nil || forged.RequestID != "forged" {
		t.Fatalf("a forged tag should stay in the writer's own log, tagged as written: %+v", got)
	}
	talkOnly := acmeTalk.until(t, 10*time.Second, "talk's view", func(l client.LogLine) bool { return l.Message == "i claim to be talk" })
	for _, l := range talkOnly {
		if l.Function != "talk" && l.Level != "system" {
			t.Fatalf("function view shows %+v", l)
		}
	}
	g := globexAll.until(t, 10*time.Second, "globex's line", func(l client.LogLine) bool { return l.Message == "hello-from-globex" })
	g = append(g, globexAll.drain(time.Second)...)
	for _, l := range g {
		if strings.Contains(l.Message, "acme") || l.Message == "raw line" || l.Message == "i claim to be talk" {
			t.Fatalf("globex's stream shows acme's line %+v", l)
		}
	}

	// The history any request reads afterwards: the same separation.
	var hist []client.LogLine
	eventually(t, 10*time.Second, "globex's history", func() bool {
		r := do(t, n, "GET", "/api/v1/tenants/globex/logs?follow=false", globex, nil)
		hist = nil
		_ = r.JSON(&hist)
		return len(hist) >= 2
	})
	for _, l := range hist {
		if strings.Contains(l.Message, "acme") || l.Message == "raw line" {
			t.Fatalf("globex's history has acme's line %+v", l)
		}
	}
	expect(t, do(t, n, "GET", "/api/v1/tenants/acme/logs?follow=false", globex, nil), http.StatusNotFound)

	// SIGTERM ends open streams instead of waiting for their clients.
	start := time.Now()
	if err := n.Stop(60 * time.Second); err != nil {
		t.Fatalf("stop with open log streams: %v", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("the drain waited %v for open log streams", took)
	}
	for range acmeAll.lines {
	}
}

// Invariant: a flood of output is rate-limited (console in the runner, raw
// writes on the node), counted in system lines, never breaks the tenant's
// next request, and cannot fill the disk: the engine keeps at most
// --container-log-files files of --container-log-size of a container's
// output, and the store keeps at most the history limit.
func TestLogFloodIsBounded(t *testing.T) {
	t.Parallel()
	n := startNode(t, wharftest.WithArgs("--log-rate", "50", "--container-log-size", "256k", "--container-log-files", "2",
		"--log-history-lines", "300"))
	tok := createTenant(t, n, "noisy")
	deploy(t, n, tok, "noisy", "console", `module.exports = function (cb) {
		for (let i = 0; i < 20000; i++) console.log('console line ' + i); cb(null, {}) }`, nil)
	deploy(t, n, tok, "noisy", "raw", `module.exports = function (cb) {
		const line = 'r'.repeat(1000) + '\n';
		for (let i = 0; i < 5000; i++) process.stdout.write(line); cb(null, {}) }`, nil)
	deploy(t, n, tok, "noisy", "who", whoami, nil)
	stream := openLogs(t, n, "noisy", tok, "?tail=0")

	expect(t, do(t, n, "GET", "/run/noisy/console", "", nil), 200)
	stream.until(t, 15*time.Second, "the runner's dropped-lines notice", func(l client.LogLine) bool {
		return l.Level == "system" && strings.Contains(l.Message, "dropped: more than 50 lines per second")
	})
	expect(t, do(t, n, "GET", "/run/noisy/raw", "", nil), 200)
	stream.until(t, 15*time.Second, "the node's dropped-lines notice", func(l client.LogLine) bool {
		return l.Level == "system" && strings.Contains(l.Message, "dropped on node "+n.NodeID)
	})
	container := host(t, n, "noisy", "who") // the tenant is served right after the flood

	// The engine's copy of the output is rotated within its limits.
	out, err := exec.Command("docker", "inspect", "-f", "{{json .HostConfig.LogConfig}}|{{.LogPath}}", container).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect: %v %s", err, out)
	}
	cfgJSON, logPath, _ := strings.Cut(strings.TrimSpace(string(out)), "|")
	var lc struct {
		Type   string
		Config map[string]string
	}
	if err := json.Unmarshal([]byte(cfgJSON), &lc); err != nil || lc.Type != "json-file" ||
		lc.Config["max-size"] != "262144" || lc.Config["max-file"] != "2" {
		t.Fatalf("container log config %s (%v)", cfgJSON, err)
	}
	files, _ := filepath.Glob(logPath + "*")
	var total int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			total += st.Size()
		}
	}
	// 5 MB were written; json-file wraps each line, so allow the last entry's overshoot.
	if len(files) == 0 || len(files) > 2 || total > 2*(256<<10)+64<<10 {
		t.Fatalf("engine keeps %d bytes in %d files for a 5 MB flood: %v", total, len(files), files)
	}

	// The store keeps at most the history limit (plus one chunk in flight).
	var hist []client.LogLine
	eventually(t, 10*time.Second, "the history to be trimmed", func() bool {
		r := do(t, n, "GET", "/api/v1/tenants/noisy/logs?follow=false&tail=10000", tok, nil)
		hist = nil
		_ = r.JSON(&hist)
		return len(hist) > 0 && len(hist) <= 300+500
	})
	fmt.Fprintf(os.Stderr, "flood: engine kept %d bytes in %d files; history holds %d lines\n", total, len(files), len(hist))
}
