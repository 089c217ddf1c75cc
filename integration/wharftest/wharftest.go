// Package wharftest runs a real `wharf serve` process for integration tests,
// in the testcontainers module style: Run(ctx, opts...) starts it, and the
// caller registers cleanup at once with CleanupNode.
package wharftest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wharfhq/wharf/node"
)

// Node is a running wharf serve process.
type Node struct {
	URL        string
	AdminToken string
	DataDir    string
	NodeID     string

	args    []string
	env     []string
	cmd     *exec.Cmd
	stdout  *syncBuffer
	stderr  *syncBuffer
	exited  chan struct{}
	exitErr error
}

type options struct {
	dataDir    string
	nodeID     string
	adminToken string
	args       []string
	env        []string
}

// Option customises Run.
type Option func(*options)

// WithDataDir runs the node on dir (to restart a node on the same data).
func WithDataDir(dir string) Option { return func(o *options) { o.dataDir = dir } }

// WithNodeID sets the node id.
func WithNodeID(id string) Option { return func(o *options) { o.nodeID = id } }

// WithAdminToken sets the admin token; "" lets the node generate one.
func WithAdminToken(tok string) Option { return func(o *options) { o.adminToken = tok } }

// WithArgs appends flags to wharf serve.
func WithArgs(args ...string) Option { return func(o *options) { o.args = append(o.args, args...) } }

// WithEnv adds KEY=VALUE variables to wharf serve's environment.
func WithEnv(kv ...string) Option { return func(o *options) { o.env = append(o.env, kv...) } }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// RemoveBinary deletes the binary Binary built; call it from TestMain after
// the tests ran.
func RemoveBinary() {
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
}

// Binary builds the wharf binary once per test process and returns its path.
func Binary() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wharf-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "wharf")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/wharf")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	return binPath, buildErr
}

func randID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Run starts wharf serve on a free loopback port and waits until it serves.
// With no WithDataDir it uses a new temporary directory.
func Run(ctx context.Context, opts ...Option) (*Node, error) {
	o := options{adminToken: "wha_test_" + randID("") + randID("")}
	for _, opt := range opts {
		opt(&o)
	}
	if o.dataDir == "" {
		dir, err := os.MkdirTemp("", "wharf-data-")
		if err != nil {
			return nil, err
		}
		o.dataDir = dir
	}
	if o.nodeID == "" {
		o.nodeID = randID("t")
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	n := &Node{DataDir: o.dataDir, NodeID: o.nodeID, AdminToken: o.adminToken, env: o.env}
	n.args = append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", o.dataDir, "--node-id", o.nodeID,
		"--log-format", "text", "--pool-size", "2"}, o.args...)
	if o.adminToken != "" {
		n.args = append(n.args, "--admin-token", o.adminToken)
	}
	return n, n.start(ctx, bin)
}

var servingRe = regexp.MustCompile(`serving on (http://\S+)`)
var adminRe = regexp.MustCompile(`(?m)^\s+(wha_\S+)$`)

func (n *Node) start(ctx context.Context, bin string) error {
	n.stdout, n.stderr = &syncBuffer{}, &syncBuffer{}
	n.cmd = exec.Command(bin, n.args...)
	n.cmd.Env = append(os.Environ(), n.env...)
	n.cmd.Stderr = n.stderr
	pr, pw := io.Pipe()
	n.cmd.Stdout = io.MultiWriter(n.stdout, pw)
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.exited = make(chan struct{})
	go func() {
		n.exitErr = n.cmd.Wait()
		pw.Close()
		close(n.exited)
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := servingRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	timeout := time.NewTimer(2 * time.Minute) // a first start builds the runtime image
	defer timeout.Stop()
	select {
	case u := <-found:
		n.URL = u
	case <-n.exited:
		return fmt.Errorf("wharf serve exited at start: %v\nstderr:\n%s", n.exitErr, n.stderr.String())
	case <-timeout.C:
		_ = n.cmd.Process.Kill()
		return fmt.Errorf("wharf serve did not start in time\nstderr:\n%s", n.stderr.String())
	case <-ctx.Done():
		_ = n.cmd.Process.Kill()
		return ctx.Err()
	}
	if n.AdminToken == "" {
		// A generated token is printed once, right after the serving line.
		deadline := time.Now().Add(2 * time.Second)
		for n.AdminToken == "" && time.Now().Before(deadline) {
			if m := adminRe.FindStringSubmatch(n.stdout.String()); m != nil {
				n.AdminToken = m[1]
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// Restart starts the same node again (same data dir, id and flags) after a Stop or Kill.
func (n *Node) Restart(ctx context.Context) error {
	if n.Running() {
		return errors.New("wharftest: node still running")
	}
	bin, err := Binary()
	if err != nil {
		return err
	}
	return n.start(ctx, bin)
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for the exit; it returns the process's exit error.
func (n *Node) Stop(timeout time.Duration) error {
	if !n.Running() {
		return n.exitErr
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		return n.exitErr
	case <-time.After(timeout):
		_ = n.cmd.Process.Kill()
		<-n.exited
		return fmt.Errorf("wharf serve did not exit within %v of SIGTERM", timeout)
	}
}

// Kill sends SIGKILL (a crash) and waits for the exit.
func (n *Node) Kill() {
	if n.Running() {
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
}

// Stderr returns the node's log so far.
func (n *Node) Stderr() string { return n.stderr.String() }

// Stdout returns what the node printed so far.
func (n *Node) Stdout() string { return n.stdout.String() }

// CleanupNode registers, at once, the removal of everything the node may leave:
// the process, its containers and network (even after a kill -9), its data dir.
func CleanupNode(t testing.TB, n *Node) {
	t.Helper()
	if n == nil {
		return
	}
	t.Cleanup(func() {
		// A graceful stop waits for container creations under way; a kill
		// could leave one that Docker finishes after the listing below.
		_ = n.Stop(30 * time.Second)
		if t.Failed() {
			t.Logf("wharf serve log (%s):\n%s", n.NodeID, tail(n.Stderr(), 60))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := RemoveNodeObjects(ctx, n.NodeID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		_ = os.RemoveAll(n.DataDir)
	})
}

// RemoveNodeObjects removes everything a node id left: containers, network
// and firewall rules, even after a kill -9 (node.RemoveObjects).
func RemoveNodeObjects(ctx context.Context, nodeID string) error {
	return node.RemoveObjects(ctx, nodeID)
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Response is an HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

var client = &http.Client{Timeout: 60 * time.Second}

// Do sends a request to the node; body, when not nil, is sent as JSON.
func (n *Node) Do(method, path, token string, body any) (Response, error) {
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			b, err := json.Marshal(body)
			if err != nil {
				return Response{}, err
			}
			rd = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequest(method, n.URL+path, rd)
	if err != nil {
		return Response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
