package fastpath

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// watch notices a client that disconnects while its request runs, so the
// request's context is canceled (and the proxied exchange abandoned) as
// net/http would do. It starts only for requests still running watchAfter
// after their body was read, so the common short request costs a reset of
// the connection's timer, not a goroutine and two wake-ups.
type watch struct {
	mu      sync.Mutex
	c       *conn
	cancel  func()
	armed   bool
	stopped bool
	reading bool
	done    chan struct{}
	timer   *time.Timer // one per connection, reset for each request
}

// reset starts watching a new request of c.
func (w *watch) reset(c *conn, cancel func()) {
	w.mu.Lock()
	w.c, w.cancel, w.armed, w.stopped, w.reading, w.done = c, cancel, false, false, false, nil
	w.mu.Unlock()
}

// arm starts the countdown (once the request body, if any, is fully read:
// the watch must never read the connection while the body is being read).
func (w *watch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.armed {
		return
	}
	w.armed = true
	if w.timer == nil {
		w.timer = time.AfterFunc(watchAfter, w.run)
	} else {
		w.timer.Reset(watchAfter)
	}
}

// run reads the connection while the request runs: EOF or an error means the
// client left; a byte is the start of a pipelined request, kept for later.
// A late run of an earlier request's countdown only starts the current
// request's watch early: it checks the current request's state.
func (w *watch) run() {
	w.mu.Lock()
	if !w.armed || w.stopped || w.reading {
		w.mu.Unlock()
		return
	}
	w.reading, w.done = true, make(chan struct{})
	c, cancel, done := w.c, w.cancel, w.done
	w.mu.Unlock()
	defer close(done)
	var b [1]byte
	n, err := c.nc.Read(b[:])
	switch {
	case n == 1:
		c.pending = append(c.pending, b[0])
	case errors.Is(err, os.ErrDeadlineExceeded):
		// stop ended the watch: the request finished first.
	default:
		cancel() // EOF or reset: nobody waits for the answer any more
	}
}

// stop ends the watch before the connection is used again.
func (w *watch) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	reading, done, c := w.reading, w.done, w.c
	w.mu.Unlock()
	if reading {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the read
		<-done
		_ = c.nc.SetReadDeadline(time.Time{})
	}
}

// eofBody arms the watch when the handler has read the whole body.
// A handler may leave a goroutine reading the body while the connection
// drains it: the body itself serialises them, hit is atomic.
type eofBody struct {
	io.ReadCloser
	onEOF func()
	hit   atomic.Bool
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.hit.CompareAndSwap(false, true) {
		b.onEOF()
	}
	return n, err
}
