package wharftest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Store is a running `wharf store` process (the embedded MongoDB-wire store).
type Store struct {
	URI     string
	Addr    string
	DataDir string
	cmd     *exec.Cmd
	exited  chan struct{}
	stderr  *syncBuffer
}

// RunRestartableStore starts `wharf store` on a free loopback port with a new data dir.
func RunRestartableStore(ctx context.Context) (*Store, error) {
	dir, err := os.MkdirTemp("", "wharf-store-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &Store{Addr: addr, DataDir: dir, URI: "mongodb://" + addr + "/"}
	return s, s.Start(ctx)
}

// Start (re)starts the store on the same address and data.
func (s *Store) Start(ctx context.Context) error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	s.stderr = &syncBuffer{}
	out := &syncBuffer{}
	s.cmd = exec.Command(bin, "store", "--listen", s.Addr, "--data-dir", s.DataDir, "--log-format", "text")
	s.cmd.Stdout, s.cmd.Stderr = out, s.stderr
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "serving") {
		select {
		case <-s.exited:
			return fmt.Errorf("wharf store exited: %s", s.stderr.String())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wharf store did not start: %s", s.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Stop terminates the store and waits for it.
func (s *Store) Stop() {
	if s.cmd == nil || s.exited == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// CleanupStore registers, at once, stopping the store and removing its data.
func CleanupStore(t testing.TB, s *Store) {
	t.Helper()
	if s == nil {
		return
	}
	t.Cleanup(func() {
		s.Stop()
		_ = os.RemoveAll(s.DataDir)
	})
}
