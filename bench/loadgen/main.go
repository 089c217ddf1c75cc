// Command loadgen sends HTTP GETs to one URL from a fixed number of
// keep-alive connections for a fixed time, then prints JSON: requests per
// second and latency quantiles. It is the benchmarks' load generator, run as
// its own process so it does not share a Go runtime with what it measures.
// Every run is bounded in time and in requests.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type result struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Non2xx     int     `json:"non_2xx"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"rps"`
	P50ms      float64 `json:"p50_ms"`
	P90ms      float64 `json:"p90_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	Conns      int     `json:"connections"`
	FirstError string  `json:"first_error,omitempty"`
}

func main() {
	target := flag.String("url", "", "http URL to GET")
	conns := flag.Int("c", 1, "connections")
	dur := flag.Duration("d", 5*time.Second, "duration (at most 60s)")
	maxReq := flag.Int("n", 5_000_000, "stop after this many requests in total")
	hdrs := flag.String("H", "", "extra headers, 'K: V' separated by ';'")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url must be an http URL")
		os.Exit(2)
	}
	if *dur > time.Minute {
		*dur = time.Minute
	}
	host := u.Host
	if u.Port() == "" {
		host += ":80"
	}
	path := u.RequestURI()
	var extra strings.Builder
	for _, h := range strings.Split(*hdrs, ";") {
		if h = strings.TrimSpace(h); h != "" {
			extra.WriteString(h + "\r\n")
		}
	}
	// A raw HTTP/1.1 client: the load generator must cost far less per
	// request than what it measures, so no net/http client machinery.
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\n" + extra.String() + "\r\n")

	var mu sync.Mutex
	var all []time.Duration
	res := result{Conns: *conns}
	var sent sync.WaitGroup
	deadline := time.Now().Add(*dur)
	var total int64
	var totalMu sync.Mutex
	start := time.Now()
	for i := 0; i < *conns; i++ {
		sent.Add(1)
		go func() {
			defer sent.Done()
			lat := make([]time.Duration, 0, 1<<16)
			errs, non2xx := 0, 0
			firstErr := ""
			var c net.Conn
			var br *bufio.Reader
			for time.Now().Before(deadline) {
				totalMu.Lock()
				if total >= int64(*maxReq) {
					totalMu.Unlock()
					break
				}
				total++
				totalMu.Unlock()
				if c == nil {
					var err error
					c, err = net.DialTimeout("tcp", host, 2*time.Second)
					if err != nil {
						errs++
						if firstErr == "" {
							firstErr = err.Error()
						}
						time.Sleep(10 * time.Millisecond)
						continue
					}
					br = bufio.NewReaderSize(c, 32<<10)
				}
				t0 := time.Now()
				_ = c.SetDeadline(t0.Add(10 * time.Second))
				status, err := roundTrip(c, br, req)
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
					c.Close()
					c = nil
					continue
				}
				lat = append(lat, time.Since(t0))
				if status < 200 || status > 299 {
					non2xx++
				}
			}
			if c != nil {
				c.Close()
			}
			mu.Lock()
			all = append(all, lat...)
			res.Errors += errs
			res.Non2xx += non2xx
			if res.FirstError == "" {
				res.FirstError = firstErr
			}
			mu.Unlock()
		}()
	}
	sent.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Requests = len(all)
	res.RPS = float64(len(all)) / res.Seconds
	slices.Sort(all)
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / 1e6
	}
	res.P50ms, res.P90ms, res.P99ms = q(.5), q(.9), q(.99)
	if len(all) > 0 {
		res.MaxMs = float64(all[len(all)-1]) / 1e6
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// roundTrip writes one request and reads one response (Content-Length or
// chunked body), returning the status.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("short status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, err
	}
	length, chunked := -1, false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		k, v, _ := strings.Cut(strings.TrimSpace(string(h)), ":")
		switch strings.ToLower(k) {
		case "content-length":
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		case "transfer-encoding":
			chunked = strings.Contains(strings.ToLower(v), "chunked")
		}
	}
	switch {
	case chunked:
		for {
			szLine, err := br.ReadString('\n')
			if err != nil {
				return 0, err
			}
			sz, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(szLine, ";", 2)[0]), 16, 64)
			if err != nil {
				return 0, err
			}
			if _, err := io.CopyN(io.Discard, br, sz+2); err != nil {
				return 0, err
			}
			if sz == 0 {
				return status, nil
			}
		}
	case length >= 0:
		_, err := io.CopyN(io.Discard, br, int64(length))
		return status, err
	}
	return 0, fmt.Errorf("response without length")
}
