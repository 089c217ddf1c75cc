// Command relay is a baseline for the benchmarks: a TCP relay that copies
// bytes both ways between each client connection and one of its own to the
// target, with no HTTP parsing at all. Whatever it adds to a round trip is the
// floor of any proxy hop on this machine (two more socket hops, two more
// wake-ups); what Wharf adds beyond it is Wharf's own work.
//
// With -http it is instead the naive HTTP proxy: a plain
// httputil.ReverseProxy to the target (its transport keeping up to 64 idle
// connections, so 16 clients reuse theirs as Wharf's proxy does).
//
//	relay -listen 127.0.0.1:0 -to 172.17.0.2:8080 [-http]
//
// It prints the address it listens on, then serves until killed.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	to := flag.String("to", "", "host:port every connection is relayed to")
	asHTTP := flag.Bool("http", false, "a plain httputil.ReverseProxy instead of a byte relay")
	flag.Parse()
	if *to == "" {
		fmt.Fprintln(os.Stderr, "relay: -to is required")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	if *asHTTP {
		rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: *to})
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		rp.Transport = t
		srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
		fmt.Fprintln(os.Stderr, "relay:", srv.Serve(ln))
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			os.Exit(1)
		}
		go relay(c, *to)
	}
}

func relay(c net.Conn, to string) {
	defer c.Close()
	u, err := net.Dial("tcp", to)
	if err != nil {
		return
	}
	defer u.Close()
	go func() {
		_, _ = io.Copy(u, c)
		_ = u.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(c, u)
}
