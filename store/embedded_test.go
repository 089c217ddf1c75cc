package store

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestEmbeddedCreatesDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	e := startEmbedded(t, dir)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", st.Mode().Perm())
	}
	if !strings.HasPrefix(e.URI(), "mongodb://127.0.0.1:") {
		t.Errorf("URI %q", e.URI())
	}
	if e.DataDir() != dir {
		t.Errorf("DataDir %q, want %q", e.DataDir(), dir)
	}
	s := connect(t, e.URI(), Options{})
	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	e1, err := StartEmbedded(ctx, dir, "127.0.0.1:0", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s1, err := Connect(ctx, e1.URI(), Options{SecretsKey: testKey, MaxPoolSize: 1})
	if err != nil {
		e1.Close()
		t.Fatal(err)
	}
	if _, err := s1.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	_, secret, err := s1.CreateToken(ctx, "acme", "ci")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s1.PutFunction(ctx, FunctionSpec{Tenant: "acme", Name: "hook", Code: "v1", Secrets: map[string]string{"K": "V"}}); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e1.Close()
	e1.Close() // idempotent

	e2 := startEmbedded(t, dir)
	s2 := connect(t, e2.URI(), Options{MaxPoolSize: 1})
	if _, err := s2.GetTenant(ctx, "acme"); err != nil {
		t.Fatalf("tenant after restart: %v", err)
	}
	p, err := s2.Authenticate(ctx, secret)
	if err != nil || p.Tenant != "acme" {
		t.Fatalf("token after restart: %+v, %v", p, err)
	}
	fv, err := s2.GetFunction(ctx, "acme", "hook")
	if err != nil {
		t.Fatalf("function after restart: %v", err)
	}
	if fv.Code != "v1" || fv.Version != 1 || fv.Secrets["K"] != "V" {
		t.Fatalf("function after restart: %+v", fv)
	}
}

func TestEmbeddedDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir)
	_, err := StartEmbedded(testCtx(t), dir, "127.0.0.1:0", testLogger(t))
	if err == nil {
		t.Fatal("second StartEmbedded on a held data directory succeeded")
	}
	want := "data directory " + dir + " is in use by another wharf process"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	// The first server is unaffected.
	s := connect(t, e.URI(), Options{})
	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// Once it stops, the directory can be served again.
	if err := s.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	e.Close()
	startEmbedded(t, dir)
}

func TestEmbeddedStartErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, addr string
	}{
		{"empty dir", "", "127.0.0.1:0"},
		{"empty address", t.TempDir(), ""},
		{"dir is a file", file, "127.0.0.1:0"},
		{"bad address", t.TempDir(), "256.0.0.1:99999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := StartEmbedded(testCtx(t), tc.dir, tc.addr, testLogger(t))
			if err == nil {
				e.Close()
				t.Fatal("want error")
			}
		})
	}
	// A failed start releases the lock.
	dir := t.TempDir()
	if _, err := StartEmbedded(testCtx(t), dir, "256.0.0.1:99999", testLogger(t)); err == nil {
		t.Fatal("want error")
	}
	startEmbedded(t, dir)
}

func TestEmbeddedStartCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	e, err := StartEmbedded(ctx, dir, "127.0.0.1:0", testLogger(t))
	if err == nil {
		// The listener may accept before the context is looked at; that is a valid start.
		e.Close()
	}
	startEmbedded(t, dir) // either way the directory is free again
}

func TestMinLevelHandler(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := slog.New(minLevelHandler{min: slog.LevelWarn, h: base.Handler()}).With("component", "ferretdb").WithGroup("g")
	l.Debug("debug-line")
	l.Info("info-line")
	l.Warn("warn-line", "k", "v")
	l.Error("error-line")
	out := buf.String()
	for _, s := range []string{"debug-line", "info-line"} {
		if strings.Contains(out, s) {
			t.Errorf("%s passed the filter:\n%s", s, out)
		}
	}
	for _, s := range []string{"warn-line", "error-line", "component=ferretdb", "g.k=v"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if l.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("Info enabled")
	}

	// FerretDB's dumps of failed responses are dropped below Error.
	buf.Reset()
	d := slog.New(minLevelHandler{min: slog.LevelWarn, h: base.Handler(), drop: isResponseDump}).With("k", "v")
	d.Warn("Response header: length: 121")
	d.Warn("Response message:\n{...}")
	d.Warn("Connection stopped")
	d.Error("Response header: closing")
	out = buf.String()
	if strings.Contains(out, "length: 121") || strings.Contains(out, "{...}") {
		t.Errorf("response dumps passed:\n%s", out)
	}
	if !strings.Contains(out, "Connection stopped") || !strings.Contains(out, "closing") {
		t.Errorf("records lost:\n%s", out)
	}
}

// The embedded server logs nothing at Info or below, and tags its records.
func TestEmbeddedLogging(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	e, err := StartEmbedded(testCtx(t), dir, "127.0.0.1:0", logger)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Connect(testCtx(t), e.URI(), Options{SecretsKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTenant(testCtx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTenant(testCtx(t), "acme"); !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if err := s.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	e.Close()
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		if strings.Contains(line, "level=DEBUG") || strings.Contains(line, "level=INFO") || !strings.Contains(line, "component=ferretdb") {
			t.Errorf("unexpected log line: %s", line)
		}
	}
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

func TestEmbeddedBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	_, err = StartEmbedded(testCtx(t), dir, ln.Addr().String(), testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "cannot listen on "+ln.Addr().String()) {
		t.Fatalf("StartEmbedded on a busy address: %v", err)
	}
	// FerretDB must not have been started with an address it cannot bind: its
	// leaked backend would panic in a finalizer at a later GC.
	runtime.GC()
	runtime.GC()
	startEmbedded(t, dir) // the lock was released
}

func TestEmbeddedWildcardAddress(t *testing.T) {
	e, err := StartEmbedded(testCtx(t), t.TempDir(), "0.0.0.0:0", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if !strings.HasPrefix(e.URI(), "mongodb://127.0.0.1:") {
		t.Fatalf("URI %q is not dialable locally", e.URI())
	}
	s := connect(t, e.URI(), Options{})
	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"mongodb://[::]:27017/":      "mongodb://127.0.0.1:27017/",
		"mongodb://0.0.0.0:1/":       "mongodb://127.0.0.1:1/",
		"mongodb://10.0.0.1:27017/":  "mongodb://10.0.0.1:27017/",
		"mongodb://127.0.0.1:27017/": "mongodb://127.0.0.1:27017/",
		"mongodb://[::1]:27017/":     "mongodb://[::1]:27017/",
		"mongodb://no-port/":         "mongodb://no-port/",
	} {
		if got := localURI(in); got != want {
			t.Errorf("localURI(%q) = %q, want %q", in, got, want)
		}
	}
}
