package mgmt

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/store"
	"github.com/wharfhq/wharf/tenantlog"
)

// Logs serves tenants' function output (the node's *tenantlog.Service).
type Logs interface {
	// Recent returns the newest n lines, oldest first.
	Recent(ctx context.Context, tenant, function string, n int) ([]store.LogLine, error)
	// Subscribe opens a live view.
	Subscribe(ctx context.Context, tenant, function string) (*tenantlog.Subscription, error)
}

var _ Logs = (*tenantlog.Service)(nil)

// Query parameters of GET /tenants/:tenant/logs.
const (
	DefaultLogTail = 100
	MaxLogTail     = 10_000
	// sseHeartbeat keeps idle streams open through proxies and lets a stream
	// notice a client that left.
	sseHeartbeat = 15 * time.Second
	sseRetryMS   = 3000
)

const (
	codeInvalidTail     = "invalid_tail"
	codeInvalidFollow   = "invalid_follow"
	codeLogsUnavailable = "logs_unavailable"
)

// logsQuery is what a logs request asks for.
type logsQuery struct {
	Function string
	Tail     int
	Follow   bool
}

// parseLogsQuery checks ?function=, ?tail= and ?follow=.
func parseLogsQuery(function, tail, follow string) (logsQuery, error) {
	q := logsQuery{Function: function, Tail: DefaultLogTail, Follow: true}
	if function != "" {
		if err := validateFunctionName(function); err != nil {
			return q, err
		}
	}
	if tail != "" {
		n, err := strconv.Atoi(tail)
		if err != nil || n < 0 || n > MaxLogTail {
			return q, errs.BadRequest(codeInvalidTail,
				"Query parameter \"tail\" must be a number of lines from 0 to %d, not %s.", MaxLogTail, quote(tail))
		}
		q.Tail = n
	}
	if follow != "" {
		b, err := strconv.ParseBool(follow)
		if err != nil {
			return q, errs.BadRequest(codeInvalidFollow,
				"Query parameter \"follow\" must be true or false, not %s.", quote(follow))
		}
		q.Follow = b
	}
	return q, nil
}

// logsPathRE matches the logs route, whose live streams no timeout may cut.
var logsPathRE = regexp.MustCompile(`^/api/v1/tenants/[^/]+/logs/?$`)

// RequestTimeout is how long a management request may take: base, plus the
// ?wait= a function PUT asks for; ok is false for live log streams, which
// last as long as their client wants.
func RequestTimeout(r *http.Request, base time.Duration) (d time.Duration, ok bool) {
	if r.Method == http.MethodGet && logsPathRE.MatchString(r.URL.Path) {
		if follow, err := strconv.ParseBool(r.URL.Query().Get("follow")); err != nil || follow {
			return 0, false // the default, and anything the handler will refuse anyway
		}
	}
	if r.Method == http.MethodPut {
		if wait, err := parseWait(r.URL.Query().Get("wait")); err == nil {
			return base + wait, true
		}
	}
	return base, true
}

// GET /tenants/:tenant/logs: the tenant's recent output, then (unless
// ?follow=false, which answers a JSON array) live output as server-sent events.
func (a *API) tenantLogs(c echo.Context) error {
	tenant, err := a.tenantAccess(c)
	if err != nil {
		return err
	}
	q, err := parseLogsQuery(c.QueryParam("function"), c.QueryParam("tail"), c.QueryParam("follow"))
	if err != nil {
		return err
	}
	if a.cfg.Logs == nil {
		return errs.New(http.StatusNotImplemented, codeLogsUnavailable, "Function logs are not available on this node.")
	}
	ctx := c.Request().Context()
	if !q.Follow {
		lines, err := a.cfg.Logs.Recent(ctx, tenant, q.Function, q.Tail)
		if err != nil {
			return storeError(err, tenantNotFound(tenant), nil)
		}
		return c.JSON(http.StatusOK, lines)
	}
	// Subscribe before reading the history, so no line falls between them.
	sub, err := a.cfg.Logs.Subscribe(ctx, tenant, q.Function)
	if err != nil {
		return storeError(err, tenantNotFound(tenant), nil)
	}
	defer sub.Close()
	history, err := a.cfg.Logs.Recent(ctx, tenant, q.Function, q.Tail)
	if err != nil {
		return storeError(err, tenantNotFound(tenant), nil)
	}
	return streamLogs(c, sub, history)
}

// streamLogs writes the history, then live lines, as server-sent events
// until the client leaves or the node shuts down. Every event is
// "event: log" with one JSON line (store.LogLine) as data.
func streamLogs(c echo.Context, sub *tenantlog.Subscription, history []store.LogLine) error {
	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream; charset=utf-8")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", sseRetryMS); err != nil {
		return nil
	}
	dup := newDuplicates(history)
	for _, l := range history {
		if writeEvent(w, l) != nil {
			return nil
		}
	}
	w.Flush()
	heartbeat := time.NewTicker(sseHeartbeat)
	defer heartbeat.Stop()
	ctx := c.Request().Context()
	for {
		select {
		case l := <-sub.Lines():
			if dup.seen(l) {
				continue
			}
			if writeEvent(w, l) != nil {
				return nil
			}
			w.Flush()
		case <-heartbeat.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
			w.Flush()
		case <-sub.Done():
			_, _ = fmt.Fprint(w, "event: end\ndata: {\"reason\":\"The node is shutting down; reconnect to continue.\"}\n\n")
			w.Flush()
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func writeEvent(w http.ResponseWriter, l store.LogLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: log\ndata: %s\n\n", b)
	return err
}

// duplicates recognises live lines that the history already showed (a line
// can reach the store between the subscription and the history read).
type duplicates struct {
	newest time.Time
	keys   map[store.LogLine]int
}

func newDuplicates(history []store.LogLine) *duplicates {
	d := &duplicates{keys: map[store.LogLine]int{}}
	for _, l := range history {
		d.keys[normal(l)]++
		if l.Time.After(d.newest) {
			d.newest = l.Time
		}
	}
	return d
}

func (d *duplicates) seen(l store.LogLine) bool {
	if len(d.keys) == 0 || l.Time.After(d.newest) {
		return false
	}
	k := normal(l)
	if d.keys[k] == 0 {
		return false
	}
	d.keys[k]--
	return true
}

// normal is a line as the store returns it (UTC, milliseconds).
func normal(l store.LogLine) store.LogLine {
	l.Time = l.Time.UTC().Truncate(time.Millisecond)
	return l
}
