package fastpath

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// bufferBeforeChunking is how much of a response without Content-Length is
// held back, so a small one still gets a length (net/http's 2 KB).
const bufferBeforeChunking = 2048

// responseWriter writes one HTTP/1.1 response the way net/http would: a Date
// header, a sniffed Content-Type when none is set, Content-Length when the
// whole body is known, chunked encoding (with declared trailers) otherwise,
// no body for HEAD, 1xx, 204 and 304.
type responseWriter struct {
	bw     *bufio.Writer
	req    *http.Request
	header http.Header

	status      int
	wroteHeader bool // WriteHeader called (status fixed)
	headSent    bool // status line and headers written
	chunked     bool
	noBody      bool
	length      int64 // declared Content-Length, -1 if none
	written     int64
	held        []byte // body held back before the head is sent
	closeAfter  bool
	err         error
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader || code < 100 || code > 999 {
		return
	}
	if code < 200 { // interim responses are not used on this path
		return
	}
	w.wroteHeader, w.status = true, code
	w.length = -1
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			w.header.Del("Content-Length")
		}
	}
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return len(p), nil
	}
	if !w.headSent {
		if w.length < 0 && len(w.held)+len(p) <= bufferBeforeChunking {
			w.held = append(w.held, p...)
			return len(p), nil
		}
		w.sendHead(false)
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	w.writeBody(p)
	return len(p), w.err
}

// Flush sends what is written so far: a stream.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.sendHead(false)
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
}

// finish completes the response after the handler returned.
func (w *responseWriter) finish() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.sendHead(true)
	}
	if w.chunked && w.err == nil {
		w.bw.WriteString("0\r\n")
		for _, k := range w.trailerKeys() {
			for _, v := range w.header[http.CanonicalHeaderKey(k)] {
				writeField(w.bw, http.CanonicalHeaderKey(k), v)
			}
		}
		w.bw.WriteString("\r\n")
	}
	if w.length >= 0 && !w.noBody && w.written < w.length {
		// Fewer bytes than declared: the client would wait for the rest.
		w.closeAfter = true
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	return w.err
}

// sendHead writes the status line and headers; complete: the handler has
// returned, so whatever is held back is the whole body.
func (w *responseWriter) sendHead(complete bool) {
	w.headSent = true
	h := w.header
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	if !w.noBody {
		if _, ok := h["Content-Type"]; !ok && len(w.held) > 0 && h.Get("Content-Encoding") == "" {
			h["Content-Type"] = []string{http.DetectContentType(w.held)}
		}
		_, trailers := h["Trailer"]
		switch {
		case w.length >= 0:
		case complete && !trailers:
			w.length = int64(len(w.held))
			h["Content-Length"] = []string{strconv.Itoa(len(w.held))}
		default:
			w.chunked = true
			h.Del("Content-Length")
			h["Transfer-Encoding"] = []string{"chunked"}
		}
	}
	if w.req.Close {
		h["Connection"] = []string{"close"}
		w.closeAfter = true
	} else if v := h.Get("Connection"); v != "" && strings.EqualFold(v, "close") {
		w.closeAfter = true
	}
	bw := w.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(w.status))
	bw.WriteByte(' ')
	text := http.StatusText(w.status)
	if text == "" {
		text = "status code " + strconv.Itoa(w.status)
	}
	bw.WriteString(text)
	bw.WriteString("\r\n")
	for k, vv := range h {
		if k == "Trailer" && !w.chunked {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
	if len(w.held) > 0 {
		held := w.held
		w.held = nil
		w.written += int64(len(held))
		w.writeBody(held)
	}
}

func (w *responseWriter) writeBody(p []byte) {
	if len(p) == 0 {
		return
	}
	if w.chunked {
		w.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		w.bw.WriteString("\r\n")
		w.bw.Write(p)
		_, w.err = w.bw.WriteString("\r\n")
		return
	}
	_, w.err = w.bw.Write(p)
}

func (w *responseWriter) trailerKeys() []string {
	var keys []string
	for _, v := range w.header["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// writeField writes one header line; values cannot break the framing
// (net/http drops CR and LF the same way).
func writeField(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// writeSimple answers a request the fast path refuses outright.
func writeSimple(bw *bufio.Writer, code int) {
	bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	_ = bw.Flush()
}
