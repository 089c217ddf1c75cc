package wharftest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// Proc is a wharf process other than serve (store, builder).
type Proc struct {
	Name    string
	DataDir string
	cmd     *exec.Cmd
	stdout  *syncBuffer
	stderr  *syncBuffer
	exited  chan struct{}
	exitErr error
}

// startProc runs the wharf binary with args and waits until a line of its
// stdout matches ready, whose first submatch it returns.
func startProc(ctx context.Context, name string, args []string, ready *regexp.Regexp) (*Proc, string, error) {
	bin, err := Binary()
	if err != nil {
		return nil, "", err
	}
	p := &Proc{Name: name, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = os.Environ()
	p.cmd.Stderr = p.stderr
	pr, pw := io.Pipe()
	p.cmd.Stdout = io.MultiWriter(p.stdout, pw)
	if err := p.cmd.Start(); err != nil {
		return nil, "", err
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[len(m)-1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	select {
	case m := <-found:
		return p, m, nil
	case <-p.exited:
		return p, "", fmt.Errorf("wharf %s exited at start: %v\nstderr:\n%s", name, p.exitErr, p.stderr.String())
	case <-timeout.C:
		p.Kill()
		return p, "", fmt.Errorf("wharf %s did not start in time\nstderr:\n%s", name, p.stderr.String())
	case <-ctx.Done():
		p.Kill()
		return p, "", ctx.Err()
	}
}

// RunStore runs `wharf store` on a free loopback port and returns it with
// the MongoDB URI it serves.
func RunStore(ctx context.Context) (*Proc, string, error) {
	dir, err := os.MkdirTemp("", "wharf-store-")
	if err != nil {
		return nil, "", err
	}
	p, uri, err := startProc(ctx, "store", []string{"store", "--listen", "127.0.0.1:0", "--data-dir", dir, "--log-format", "text"},
		regexp.MustCompile(`serving (mongodb://\S+)`))
	if p == nil {
		p = &Proc{Name: "store"}
	}
	p.DataDir = dir
	return p, uri, err
}

// RunBuilder runs `wharf builder` with id against the store at uri.
func RunBuilder(ctx context.Context, uri, id string, args ...string) (*Proc, error) {
	dir, err := os.MkdirTemp("", "wharf-builder-")
	if err != nil {
		return nil, err
	}
	p, _, err := startProc(ctx, "builder", append([]string{"builder", "--mongo-uri", uri, "--node-id", id,
		"--data-dir", dir, "--log-format", "text"}, args...), regexp.MustCompile(`(Wharf builder \S+)`))
	if p == nil {
		p = &Proc{Name: "builder"}
	}
	p.DataDir = dir
	return p, err
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL (a crash) and waits for the exit.
func (p *Proc) Kill() {
	if p.Running() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Stop sends SIGTERM and waits up to timeout, then kills.
func (p *Proc) Stop(timeout time.Duration) error {
	if !p.Running() {
		return p.exitErr
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.exitErr
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("wharf %s did not exit within %v of SIGTERM", p.Name, timeout)
	}
}

// Stderr returns the process's log so far.
func (p *Proc) Stderr() string {
	if p.stderr == nil {
		return ""
	}
	return p.stderr.String()
}

// CleanupProc registers, at once, the stop of p and the removal of its data
// directory and of every container and network of the given node ids.
func CleanupProc(t testing.TB, p *Proc, nodeIDs ...string) {
	t.Helper()
	if p == nil {
		return
	}
	t.Cleanup(func() {
		_ = p.Stop(30 * time.Second)
		if t.Failed() {
			t.Logf("wharf %s log:\n%s", p.Name, tail(p.Stderr(), 40))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, id := range nodeIDs {
			if err := RemoveNodeObjects(ctx, id); err != nil {
				t.Errorf("cleanup %s: %v", id, err)
			}
		}
		if p.DataDir != "" {
			_ = os.RemoveAll(p.DataDir)
		}
	})
}
