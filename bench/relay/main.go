// Command relay is a baseline for the benchmarks: a TCP relay that copies
// bytes both ways between each client connection and one of its own to the
// target, with no HTTP parsing at all. Whatever it adds to a round trip is the
// floor of any proxy hop on this machine (two more socket hops, two more
// wake-ups); what Wharf adds beyond it is Wharf's own work.
//
//	relay -listen 127.0.0.1:0 -to 172.17.0.2:8080
//
// It prints the address it listens on, then serves until killed.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	to := flag.String("to", "", "host:port every connection is relayed to")
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
