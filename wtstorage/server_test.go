package wtstorage

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/store"
	"github.com/wharfhq/wharf/store/storetest"
)

func testStore(t *testing.T) *store.Store { return storetest.New(t, 1) }

// client speaks HTTP over one unix socket, as the runner does.
type client struct {
	t *testing.T
	c *http.Client
}

func dial(t *testing.T, path string) client {
	return client{t, &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

func (c client) do(method, fn, body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, "http://storage/v1/functions/"+fn+"/storage", strings.NewReader(body))
	res, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, fn, err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		c.t.Fatalf("%s %s: answer is not JSON: %v", method, fn, err)
	}
	return res.StatusCode, out
}

func TestChannel(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	for _, tn := range []string{"acme", "beta"} {
		if _, err := st.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.PutFunction(ctx, store.FunctionSpec{Tenant: tn, Name: "counter", Code: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(st, catalog.New(st, logger), logger)
	t.Cleanup(srv.Close)

	// A path longer than a socket address holds, as data directories can be.
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 80), "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := srv.Attach("acme", dir); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, SocketName)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket %s: %v %v, want a socket any uid can connect to", sock, fi.Mode(), err)
	}
	if err := srv.Attach("acme", dir); err == nil {
		t.Fatal("a second Attach of one directory succeeded")
	}
	// Connect through a short link to the directory (the long path cannot be dialled).
	link := filepath.Join(t.TempDir(), "a")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	c := dial(t, filepath.Join(link, SocketName))

	check := func(status int, body map[string]any, wantStatus int, want string) {
		t.Helper()
		b, _ := json.Marshal(body)
		if status != wantStatus || !strings.Contains(string(b), want) {
			t.Fatalf("answer %d %s, want %d containing %s", status, b, wantStatus, want)
		}
	}
	s, b := c.do("GET", "counter", "")
	check(s, b, 200, `{"rev":0}`)
	s, b = c.do("PUT", "counter", `{"rev":0,"data":{"n":1}}`)
	check(s, b, 200, `{"rev":1}`)
	s, b = c.do("GET", "counter", "")
	check(s, b, 200, `{"data":{"n":1},"rev":1}`)
	s, b = c.do("PUT", "counter", `{"rev":0,"data":{"n":5}}`)
	check(s, b, 409, `"code":"storage_conflict"`)
	check(s, b, 409, `"data":{"n":1}`)
	check(s, b, 409, `"rev":1`)
	s, b = c.do("PUT", "counter", `{"rev":0,"force":true,"data":{"n":7}}`)
	check(s, b, 200, `{"rev":2}`)
	s, b = c.do("PUT", "counter", `{"rev":2,"data":null}`)
	check(s, b, 200, `{"rev":3}`)
	s, b = c.do("GET", "counter", "")
	check(s, b, 200, `{"rev":3}`)

	// Refusals change nothing.
	big := `{"rev":3,"data":"` + strings.Repeat("x", store.MaxStorageBytes) + `"}`
	s, b = c.do("PUT", "counter", big)
	check(s, b, 413, `"code":"storage_too_large"`)
	huge := `{"rev":3,"data":"` + strings.Repeat("x", maxBody) + `"}`
	s, b = c.do("PUT", "counter", huge)
	check(s, b, 413, `"code":"storage_too_large"`)
	for _, bad := range []string{`{"rev":3,"data":{}`, `{"rev":3,"data":1,"tenant":"beta"}`, `{"rev":-1,"data":1}`, `[]`, `{"rev":3,"data":1}{}`} {
		s, b = c.do("PUT", "counter", bad)
		check(s, b, 400, `"code":"bad_body"`)
	}
	// Only the socket's tenant: a function acme does not have is not found,
	// whoever else has one of that name.
	s, b = c.do("GET", "nope", "")
	check(s, b, 404, `"code":"function_not_found"`)
	s, b = c.do("PUT", "..%2F..%2Fbeta%2Fcounter", `{"rev":0,"data":1}`)
	check(s, b, 404, `"code":`)
	if got, _ := st.GetStorage(ctx, "acme", "counter"); got.Rev != 3 {
		t.Fatalf("refused calls changed acme's storage: %+v", got)
	}
	if got, _ := st.GetStorage(ctx, "beta", "counter"); got.Rev != 0 {
		t.Fatalf("acme's socket reached beta's storage: %+v", got)
	}

	// Detach cuts the socket and removes its file; detaching again is a no-op.
	srv.Detach(dir)
	srv.Detach(dir)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket file after Detach: %v", err)
	}
	if _, err := net.Dial("unix", filepath.Join(link, SocketName)); err == nil {
		t.Fatal("the socket still accepts after Detach")
	}
	if srv.Open() != 0 {
		t.Fatalf("%d sockets open", srv.Open())
	}
	// After Close no socket is created.
	srv.Close()
	if err := srv.Attach("acme", dir); err == nil {
		t.Fatal("Attach after Close succeeded")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket file left by a refused Attach: %v", err)
	}
}

// A container cannot hold more than maxConns connections in the node: the
// next one waits until one of them closes.
func TestChannelConnectionLimit(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	if _, err := st.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PutFunction(ctx, store.FunctionSpec{Tenant: "acme", Name: "f", Code: "x"}); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(st, catalog.New(st, logger), logger)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := srv.Attach("acme", dir); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, SocketName)
	var held []net.Conn
	for range maxConns {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	c := dial(t, sock)
	c.c.Timeout = 500 * time.Millisecond
	req, _ := http.NewRequest("GET", "http://storage/v1/functions/f/storage", nil)
	if res, err := c.c.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("a connection past the limit was served: %d", res.StatusCode)
	}
	held[0].Close()
	c.c.Timeout = 20 * time.Second
	if s, b := c.do("GET", "f", ""); s != 200 || b["rev"] != float64(0) {
		t.Fatalf("after a connection closed: %d %v", s, b)
	}
	for _, h := range held[1:] {
		h.Close()
	}
}
