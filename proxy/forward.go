package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"
)

// forward.go is the proxy's hot path: one HTTP/1.1 exchange with a runner
// over a pooled keep-alive connection, run on the request's goroutine (the
// body, when there is one, is written from a second goroutine so a runner
// that answers before reading it cannot deadlock the exchange).

// aLongTimeAgo is a deadline that makes every pending read and write on a
// connection fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// noResponseError: the exchange failed before a single byte of a response
// arrived. On a reused connection that usually means the runner closed it
// while it sat idle, so a request without a body is sent again once.
type noResponseError struct {
	err    error
	reused bool
}

func (e *noResponseError) Error() string { return "no response from the runner: " + e.err.Error() }
func (e *noResponseError) Unwrap() error { return e.err }

// clientBodyError: reading the client's request body failed (the client's
// fault, or a body limit): never the container's.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// committedError: the response was already under way when the exchange
// failed; the client connection is aborted so a cut response never looks
// complete.
type committedError struct{ err error }

func (e *committedError) Error() string { return "response aborted: " + e.err.Error() }
func (e *committedError) Unwrap() error { return e.err }

// clientWriteError: writing the response to the client failed (it left).
type clientWriteError struct{ err error }

func (e *clientWriteError) Error() string { return "writing the response: " + e.err.Error() }
func (e *clientWriteError) Unwrap() error { return e.err }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// outbound is what the runner is sent besides the client's own request.
type outbound struct {
	target    string // request-target: the webtask path and the query
	function  string
	version   string
	requestID string
	forwarded string // the client's address, appended to X-Forwarded-For
}

// forward sends req to the container of cl and copies the answer to w,
// until cl's deadline or the end of ctx (the client left).
func (p *Proxy) forward(ctx context.Context, w http.ResponseWriter, req *http.Request, cl *call, out *outbound) error {
	hasBody := req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0
	for attempt := 0; ; attempt++ {
		uc, err := p.up.get(ctx, cl.a.C.ID, cl.a.C.IP, p.port, cl.deadline)
		if err != nil {
			return err
		}
		err = p.exchange(ctx, uc, w, req, cl, out, hasBody)
		var nr *noResponseError
		if attempt == 0 && !hasBody && errors.As(err, &nr) && nr.reused && ctx.Err() == nil && time.Now().Before(cl.deadline) {
			continue
		}
		return err
	}
}

func (p *Proxy) exchange(ctx context.Context, uc *upConn, w http.ResponseWriter, req *http.Request, cl *call,
	out *outbound, hasBody bool) (err error) {
	// The function's deadline and the client leaving both end the exchange:
	// the first as the connection's deadline, the second by moving it into
	// the past.
	if err := uc.nc.SetDeadline(cl.deadline); err != nil {
		uc.nc.Close()
		return &noResponseError{err: err, reused: uc.reused}
	}
	abort := func() { _ = uc.nc.SetDeadline(aLongTimeAgo) }
	stop := context.AfterFunc(ctx, abort)
	reuse := false
	defer func() {
		if !stop() { // the deadline was moved into the past
			reuse = false
		}
		if reuse {
			p.up.put(uc)
		} else {
			uc.nc.Close()
		}
	}()

	writeHead(uc.bw, req, out, hasBody)
	var bodyDone chan error
	if hasBody {
		bodyDone = make(chan error, 1)
		go func() { bodyDone <- writeBody(uc, req, abort) }()
	} else if err := uc.bw.Flush(); err != nil {
		return &noResponseError{err: err, reused: uc.reused}
	}

	resp, err := readResponse(uc.br, req)
	if err != nil {
		if hasBody {
			uc.nc.Close() // unblocks the writer
			if berr := <-bodyDone; berr != nil {
				var cbe *clientBodyError
				if errors.As(berr, &cbe) {
					return berr
				}
			}
		}
		var nr *noResponseError
		if errors.As(err, &nr) {
			nr.reused = uc.reused
		}
		return err
	}
	cl.firstByte = time.Since(cl.sent)
	err = p.copyResponse(w, resp, cl)
	bodyOK := true
	if hasBody {
		bodyOK = bodyWritten(bodyDone, abort)
	}
	reuse = err == nil && bodyOK && !resp.Close
	return err
}

// bodyWritten waits for the body writer after the answer came. Normally it
// has finished (or is about to send its result); one still blocked after a
// grace period is writing to a runner that answered without reading: it is
// aborted, and the connection cannot be reused.
func bodyWritten(done <-chan error, abort func()) bool {
	select {
	case err := <-done:
		return err == nil
	default:
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case err := <-done:
		return err == nil
	case <-t.C:
		abort()
		<-done
		return false
	}
}

// hopHeaders never cross a proxy (RFC 9110 7.6.1), with the ones the proxy
// writes itself.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Expect": true,
}

// skipHeader: headers a client may not pass to the runner.
func skipHeader(k string, connection []string) bool {
	if hopHeaders[k] || (len(k) > 8 && strings.EqualFold(k[:8], "x-wharf-")) {
		return true
	}
	for _, v := range connection { // headers the client named hop-by-hop
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), k) {
				return true
			}
		}
	}
	return false
}

func writeHead(bw *bufio.Writer, req *http.Request, out *outbound, hasBody bool) {
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(out.target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\n")
	connection := req.Header["Connection"]
	for k, vv := range req.Header {
		// X-Forwarded-For and X-Request-Id are written below, each exactly once.
		if skipHeader(k, connection) || k == "X-Forwarded-For" || k == hdrRequestID {
			continue
		}
		for _, v := range vv {
			writeHeader(bw, k, v)
		}
	}
	xff := out.forwarded
	if prior := req.Header["X-Forwarded-For"]; len(prior) > 0 && xff != "" {
		xff = strings.Join(prior, ", ") + ", " + xff
	}
	if xff != "" {
		writeHeader(bw, "X-Forwarded-For", xff)
	}
	writeHeader(bw, hdrRequestID, out.requestID)
	// One routing header, not one per field: every header costs the runner,
	// whose CPU quota is what a warm tenant's throughput runs out of.
	bw.WriteString(hdrRoute + ": ")
	bw.WriteString(out.function)
	bw.WriteByte('@')
	bw.WriteString(out.version)
	bw.WriteString("\r\n")
	switch {
	case !hasBody && (req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch):
		bw.WriteString("Content-Length: 0\r\n")
	case hasBody && req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(req.ContentLength, 10))
		bw.WriteString("\r\n")
	case hasBody:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
}

func writeHeader(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// writeBody streams the request body after the head. On any failure it
// aborts the connection, so a runner waiting for the rest gives up too.
func writeBody(uc *upConn, req *http.Request, abort func()) error {
	var dst io.Writer = uc.bw
	var chunked io.WriteCloser
	if req.ContentLength < 0 {
		chunked = httputil.NewChunkedWriter(uc.bw)
		dst = chunked
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := req.Body.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				abort()
				return werr
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			abort()
			return &clientBodyError{rerr}
		}
	}
	if chunked != nil {
		_ = chunked.Close() // the last chunk
		_, _ = uc.bw.WriteString("\r\n")
	}
	if err := uc.bw.Flush(); err != nil {
		abort()
		return err
	}
	return nil
}

// readResponse reads the runner's answer, skipping interim 1xx responses.
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if _, err := br.Peek(1); err != nil {
		return nil, &noResponseError{err: err}
	}
	for range 8 {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
	return nil, errors.New("too many interim responses")
}

// copyResponse writes the runner's answer to the client: refused before
// anything is sent when its declared length is over the limit, cut (and the
// client connection aborted) when it streams past it.
func (p *Proxy) copyResponse(w http.ResponseWriter, resp *http.Response, cl *call) error {
	defer resp.Body.Close()
	if err := limitResponse(resp, cl.maxResp, p.log); err != nil {
		return err
	}
	h := w.Header()
	for k, vv := range resp.Header {
		if hopHeaders[k] && k != "Content-Length" {
			continue
		}
		if prior := h[k]; prior != nil {
			h[k] = append(prior, vv...)
		} else {
			h[k] = vv
		}
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	// Unknown length means streaming (event streams, progress): each piece
	// goes out as it comes. A declared length is written in one go.
	flusher, _ := w.(http.Flusher)
	stream := resp.ContentLength < 0 && flusher != nil
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return &committedError{&clientWriteError{werr}}
			}
			if stream {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return &committedError{rerr}
		}
	}
	for k, vv := range resp.Trailer {
		h[k] = vv
	}
	return nil
}

// errClientGone: the client left before an answer; there is nobody to answer.
var errClientGone = errors.New("the client went away")

// classify turns a failed exchange into the client's answer, and tells the
// handler what it means for the container: a timeout has it checked, a
// broken exchange has it replaced, a client's fault leaves it alone.
func (p *Proxy) classify(err error, req *http.Request, cl *call) error {
	var committed *committedError
	isCommitted := errors.As(err, &committed)
	var mbe *http.MaxBytesError
	var cbe *clientBodyError
	var cwe *clientWriteError
	var nr *noResponseError
	var out error
	switch {
	case errors.As(err, &mbe):
		out = bodyTooLarge(mbe.Limit)
	case errors.Is(err, errResponseTooLarge):
		out = responseTooLarge(cl.maxResp)
	case !time.Now().Before(cl.deadline):
		p.ctr.Suspect(cl.a)
		out = functionTimeout(cl.ms)
	case req.Context().Err() != nil || errors.As(err, &cwe):
		out = errClientGone
	case errors.As(err, &cbe):
		out = badBody(cbe.err)
	case errors.As(err, &nr) && nr.reused:
		// Most likely the runner closed an idle connection as this request
		// went out; a check decides whether the container is really broken.
		p.ctr.Suspect(cl.a)
		out = containerFailed(err)
	default:
		p.ctr.Fail(cl.a, fmt.Sprintf("proxy: %v", err))
		p.up.forget(cl.a.C.ID)
		out = containerFailed(err)
	}
	if isCommitted {
		return &committedError{out}
	}
	return out
}
