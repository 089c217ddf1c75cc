package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/wharfhq/wharf/errs"
)

// TenantLimiter bounds the requests one tenant has in flight (limit.Tenants):
// Acquire waits briefly for a slot, then fails with a 429.
type TenantLimiter interface {
	Acquire(ctx context.Context, tenant string) (release func(), err error)
}

// errResponseTooLarge is returned by limitResponse; proxyError turns it into
// a 502 without blaming the container.
var errResponseTooLarge = errors.New("proxy: response body exceeds the limit")

// limitResponse refuses a response whose declared length exceeds max
// before anything is sent, and cuts one that streams past it: the client
// then sees an aborted response rather than an unbounded one.
func limitResponse(resp *http.Response, max int64, log *slog.Logger) error {
	if resp.ContentLength > max {
		return fmt.Errorf("%w: %d bytes declared", errResponseTooLarge, resp.ContentLength)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: max, limit: max, log: log, req: resp.Request}
	return nil
}

// bodyLimit is a function's effective limit: its own when set and lower than
// the node's, else the node's.
func bodyLimit(node, fn int64) int64 {
	if fn > 0 && fn < node {
		return fn
	}
	return node
}

func responseTooLarge(limit int64) error {
	return errs.New(http.StatusBadGateway, "response_too_large",
		"The function's response exceeds the limit of %d bytes.", limit)
}

// limitedBody fails a read once more than left bytes came through.
type limitedBody struct {
	rc    io.ReadCloser
	left  int64
	limit int64
	log   *slog.Logger
	req   *http.Request
}

func (b *limitedBody) Read(buf []byte) (int, error) {
	if b.left < 0 {
		return 0, errResponseTooLarge
	}
	// Read one byte past the limit to tell "exactly the limit" from "more".
	if int64(len(buf)) > b.left+1 {
		buf = buf[:b.left+1]
	}
	n, err := b.rc.Read(buf)
	b.left -= int64(n)
	if b.left < 0 {
		n += int(b.left) // deliver exactly up to the limit
		b.left = -1
		if b.req != nil && b.log != nil {
			b.log.Warn("response cut at the size limit", "path", b.req.URL.Path, "limit", b.limit)
		}
		return n, errResponseTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
