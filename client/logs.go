package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// LogLine is one line of a function's output.
type LogLine struct {
	Time      time.Time `json:"time"`
	Function  string    `json:"function"`
	RequestID string    `json:"request_id"`
	Level     string    `json:"level"`
	Message   string    `json:"message"`
}

func (c *Client) logsURL(tenant, function string, tail int, follow bool) string {
	q := url.Values{}
	if function != "" {
		q.Set("function", function)
	}
	q.Set("tail", strconv.Itoa(tail))
	q.Set("follow", strconv.FormatBool(follow))
	return c.api("tenants", tenant, "logs") + "?" + q.Encode()
}

// Logs returns the newest tail lines of a tenant's output (of one function
// when function is not ""), oldest first.
func (c *Client) Logs(ctx context.Context, tenant, function string, tail int) ([]LogLine, error) {
	var out []LogLine
	return out, c.do(ctx, http.MethodGet, c.logsURL(tenant, function, tail, false), nil, &out)
}

// ErrStreamEnded is returned by StreamLogs when the node ended the stream
// (it is shutting down); reconnecting continues on another node.
var ErrStreamEnded = errors.New("the node ended the log stream")

// StreamLogs sends the newest tail lines, then every new line, to fn until
// ctx ends (nil), the node ends the stream (ErrStreamEnded) or the
// connection breaks (an error).
func (c *Client) StreamLogs(ctx context.Context, tenant, function string, tail int, fn func(LogLine)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.logsURL(tenant, function, tail, true), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	c.auth(req)
	resp, err := c.stream.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readError(resp)
	}
	err = ReadEvents(resp.Body, func(event, data string) error {
		switch event {
		case "log":
			var l LogLine
			if err := json.Unmarshal([]byte(data), &l); err != nil {
				return fmt.Errorf("the log stream sent a line that is not JSON: %w", err)
			}
			fn(l)
		case "end":
			return ErrStreamEnded
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		return fmt.Errorf("the log stream from %s closed", c.base)
	}
	return err
}

// maxEventLine bounds one line of an event stream.
const maxEventLine = 1 << 20

// ReadEvents parses a text/event-stream (the subset Wharf sends: event,
// data, id, retry fields and comments) and calls emit for each complete
// event, stopping at the first error emit returns. It returns nil at the
// end of the stream.
func ReadEvents(r io.Reader, emit func(event, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	event, data, hasData := "", strings.Builder{}, false
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			if hasData {
				name := event
				if name == "" {
					name = "message"
				}
				if err := emit(name, data.String()); err != nil {
					return err
				}
			}
			event, hasData = "", false
			data.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment (heartbeat)
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	return nil
}
