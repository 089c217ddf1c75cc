package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wharfhq/wharf/client"
)

// wharf logs [-f] [--function NAME] [--tail N]: the tenant's recent
// function output; with -f, then live output until interrupted.
func (r *runner) logs(args []string) error {
	var c common
	var follow bool
	var function string
	var tail int
	f := newFlags("logs")
	c.register(f)
	f.BoolVar(&follow, "f", false, "follow: keep printing new lines")
	f.BoolVar(&follow, "follow", false, "same as -f")
	f.StringVar(&function, "function", "", "only this function's lines")
	f.IntVar(&tail, "tail", 100, "how many recent lines to show first")
	pos, err := parse(f, args)
	if err != nil {
		return err
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	if err := want("logs", pos); err != nil {
		return err
	}
	if tail < 0 || tail > 10000 {
		return usagef("--tail must be between 0 and 10000")
	}
	s, err := r.connect(c)
	if err != nil {
		return err
	}
	tenant, err := r.tenant(c, s)
	if err != nil {
		return err
	}
	show := func(l client.LogLine) {
		if asJSON {
			b, _ := json.Marshal(l)
			r.printf("%s\n", b)
			return
		}
		r.printf("%s\n", formatLine(l))
	}
	if !follow {
		lines, err := s.Logs(r.ctx, tenant, function, tail)
		if err != nil {
			return err
		}
		if asJSON {
			return r.printJSON(lines)
		}
		for _, l := range lines {
			show(l)
		}
		return nil
	}
	// Follow until interrupted, reconnecting when the stream breaks (a node
	// shutting down ends its streams; another node continues).
	backoff := 500 * time.Millisecond
	for {
		connected := time.Now()
		err := s.StreamLogs(r.ctx, tenant, function, tail, show)
		if r.ctx.Err() != nil {
			return nil
		}
		var apiErr *client.Error
		if errors.As(err, &apiErr) {
			return err // refused (token, tenant): reconnecting would not help
		}
		tail = 0 // what came before was shown
		if time.Since(connected) > 10*time.Second {
			backoff = 500 * time.Millisecond
		}
		if !errors.Is(err, client.ErrStreamEnded) {
			r.progress("wharf: %s; reconnecting.\n", strings.TrimSuffix(sentence(err.Error()), "."))
		}
		select {
		case <-r.ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// formatLine is one log line for people: time, function, request, level,
// message (continuation lines indented).
func formatLine(l client.LogLine) string {
	fn := l.Function
	if fn == "" {
		fn = "-"
	}
	rid := l.RequestID
	if rid == "" {
		rid = "-"
	}
	msg := strings.ReplaceAll(l.Message, "\n", "\n    ")
	return fmt.Sprintf("%s  %s  %s  %-6s %s", l.Time.Local().Format("2006-01-02 15:04:05.000"), fn, rid, l.Level, msg)
}
