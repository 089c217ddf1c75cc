package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/fastpath"
	"github.com/wharfhq/wharf/handler"
	"github.com/wharfhq/wharf/pool"
)

// The proxy's own cost per request, against a plain httputil.ReverseProxy
// measured the same way: a minimal keep-alive backend and clients on raw
// connections, all on loopback in this process. The figures compare the two
// paths with each other; bench/ measures Wharf against real containers.

// runnerAnswer is what the runner's Node server answers a trivial function
// with: its headers, in its order.
const runnerAnswer = "HTTP/1.1 200 OK\r\nx-wt-response-source: webtask\r\ncontent-type: application/json\r\n" +
	"Date: Thu, 03 Dec 2026 16:00:00 GMT\r\nConnection: keep-alive\r\n" +
	"Content-Length: 17\r\n\r\n{\"hello\":\"world\"}"

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
					if _, err := io.WriteString(c, runnerAnswer); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

// drive sends b.N GETs over keep-alive connections, one per parallel worker.
// Besides the wall time it reports the process's CPU time per request
// (clients, proxy and backend together): steadier than ns/op on a VM whose
// wake-up latency varies.
func drive(b *testing.B, addr, path string) {
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	defer func() {
		b.StopTimer()
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}()
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

// processCPU is the CPU time this process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// warmContainers has the tenant's container warm, as on the warm path (the
// fake of the unit tests claims one for every request).
type warmContainers struct {
	fakeContainers
	a *handler.Assignment
}

func (w *warmContainers) Warm(string) *handler.Assignment { return w.a }

// BenchmarkWharfFastPath is the node's own serving stack on the warm
// webhook path: the fast path's connection loop in front of echo and the
// proxy, the tenant's container already assigned.
func BenchmarkWharfFastPath(b *testing.B) {
	backend := rawBackend(b)
	host, port, _ := net.SplitHostPort(backend)
	portN, _ := strconv.Atoi(port)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	wc := &warmContainers{a: &handler.Assignment{Tenant: "acme", C: &pool.Container{ID: "c1", IP: host}}}
	p := New(Config{RunnerPort: portN}, fakeFns{"acme/f": {Tenant: "acme", Name: "f", Version: 1}}, wc, logger)
	defer p.Close()
	e := echo.New()
	e.HTTPErrorHandler = errs.HTTPErrorHandler(logger)
	p.Register(e)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fs := &fastpath.Server{Handler: e, Fallback: &http.Server{Handler: e}, Eligible: fastpath.EligibleRunPath}
	go func() { _ = fs.Serve(ln) }()
	defer func() { _ = fs.Shutdown(context.Background(), ln) }()
	drive(b, ln.Addr().String(), "/run/acme/f")
}
