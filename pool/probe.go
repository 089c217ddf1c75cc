package pool

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: time.Second}).DialContext},
	Timeout:   2 * time.Second,
}

// HTTPProbe asks the runner at ip whether it is ready.
func HTTPProbe(ctx context.Context, ip string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(ip, strconv.Itoa(RunnerPort))+"/_wharf/ready", nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ready probe: status %d", resp.StatusCode)
	}
	return nil
}

// waitReady polls probe until it succeeds or ctx ends. Node starts in tens of
// milliseconds, so the interval is short and grows a little.
func waitReady(ctx context.Context, probe func(context.Context, string) error, ip string) error {
	interval := 5 * time.Millisecond
	for {
		err := probe(ctx, ip)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last probe: %v)", ctx.Err(), err)
		case <-time.After(interval):
		}
		interval = min(interval*2, 100*time.Millisecond)
	}
}
