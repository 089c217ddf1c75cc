package tenantlog

import "bytes"

// lineWriter splits a byte stream into lines and hands each to emit, without
// its newline. A line longer than max is cut to max bytes; the rest of it is
// discarded, so a stream without newlines never grows memory.
type lineWriter struct {
	max     int
	emit    func(line []byte)
	buf     []byte
	discard bool // inside an overlong line, past max
}

func newLineWriter(max int, emit func([]byte)) *lineWriter {
	return &lineWriter{max: max, emit: emit}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !w.discard {
			room := w.max - len(w.buf)
			if len(chunk) > room {
				w.buf = append(w.buf, chunk[:room]...)
				w.discard = true
			} else {
				w.buf = append(w.buf, chunk...)
			}
		}
		if i < 0 {
			break
		}
		w.emit(w.buf)
		w.buf, w.discard = w.buf[:0], false
		p = p[i+1:]
	}
	return n, nil
}

// Flush emits a last line that had no newline.
func (w *lineWriter) Flush() {
	if len(w.buf) > 0 || w.discard {
		w.emit(w.buf)
	}
	w.buf, w.discard = w.buf[:0], false
}
