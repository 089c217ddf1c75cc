package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
)

// The proxy's own cost per request, against a plain httputil.ReverseProxy
// measured the same way: a minimal keep-alive backend and clients on raw
// connections, all on loopback in this process. The figures compare the two
// paths with each other; bench/ measures Wharf against real containers.

// rawBackend answers every request on a connection with a fixed response.
func rawBackend(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"hello\":\"world\"}"); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

// drive sends b.N GETs over keep-alive connections, one per parallel worker.
func drive(b *testing.B, addr, path string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

func BenchmarkWharfProxy(b *testing.B) {
	backend := rawBackend(b)
	host, port, _ := net.SplitHostPort(backend)
	portN, _ := strconv.Atoi(port)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := New(Config{RunnerPort: portN}, fakeFns{"acme/f": {Tenant: "acme", Name: "f", Version: 1}}, &fakeContainers{ip: host}, logger)
	defer p.Close()
	e := echo.New()
	e.HTTPErrorHandler = errs.HTTPErrorHandler(logger)
	p.Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	drive(b, srv.Listener.Addr().String(), "/run/acme/f")
}

// BenchmarkReverseProxyBaseline is the standard library's reverse proxy
// alone, with nothing of Wharf's around it.
func BenchmarkReverseProxyBaseline(b *testing.B) {
	backend := rawBackend(b)
	u, _ := url.Parse("http://" + backend)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	srv := httptest.NewServer(rp)
	defer srv.Close()
	drive(b, srv.Listener.Addr().String(), "/run/acme/f")
}

// BenchmarkDirect is the backend with no proxy: the floor.
func BenchmarkDirect(b *testing.B) {
	drive(b, rawBackend(b), "/run/acme/f")
}
