package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// logRecord is one line the runner writes on stdout for a console call.
type logRecord struct {
	T   string `json:"t"`
	Lvl string `json:"lvl"`
	Fn  string `json:"fn"`
	Rid string `json:"rid"`
	Msg string `json:"msg"`
}

// records parses the runner's stdout; every line must be a record.
func records(t *testing.T, r *runnerProc) []logRecord {
	t.Helper()
	var out []logRecord
	for _, line := range strings.Split(strings.TrimRight(r.stdout.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		var rec logRecord
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			t.Fatalf("stdout line %q is not a log record: %v", line, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, rec.T); err != nil {
			t.Fatalf("record %q has no ISO time: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// waitRecords waits until pred holds for the records written so far.
func waitRecords(t *testing.T, r *runnerProc, what string, pred func([]logRecord) bool) []logRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := records(t, r)
		if pred(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; records: %+v", what, recs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func find(recs []logRecord, msg string) (logRecord, bool) {
	for _, r := range recs {
		if r.Msg == msg {
			return r, true
		}
	}
	return logRecord{}, false
}

// Invariant: every console method of a function writes one JSON record on
// stdout tagged with the function's name and the request id the host sent,
// including output of code that runs later (timers, promises) and output of
// the module's top-level code; nothing is written during the warm-up.
func TestConsoleOutputIsTagged(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.stderr.waitFor(t, "warmed up in", 5*time.Second)
	if out := r.stdout.String(); out != "" {
		t.Fatalf("the warm-up wrote to stdout: %q", out)
	}
	r.deploy(t, "talk", 1, `console.log('loaded at top level');
module.exports = function (ctx, cb) {
  console.log('hello %s', ctx.query.who);
  console.info('info', 1);
  console.debug('debug');
  console.warn('warn');
  console.error(new Error('boom').message);
  console.dir({a: {b: 1}});
  console.log('multi\nline');
  setTimeout(() => { console.log('later ' + ctx.query.who); cb(null, {ok: true}); }, Number(ctx.query.wait || 0));
}`)
	r.deploy(t, "rr", 1, `module.exports = function (ctx, req, res) { console.log('from rr'); res.end('ok') }`)

	rep := r.do(t, call{fn: "talk", path: "?who=ann&wait=1", header: map[string]string{"X-Request-Id": "req-ann"}})
	rep.expect(t, 200, "webtask")
	recs := waitRecords(t, r, "the delayed line", func(rs []logRecord) bool { _, ok := find(rs, "later ann"); return ok })
	want := []struct{ msg, lvl string }{
		{"loaded at top level", "log"}, {"hello ann", "log"}, {"info 1", "info"}, {"debug", "debug"},
		{"warn", "warn"}, {"boom", "error"}, {"{ a: { b: 1 } }", "log"}, {"multi\nline", "log"}, {"later ann", "log"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		got := recs[i]
		if got.Msg != w.msg || got.Lvl != w.lvl || got.Fn != "talk" || got.Rid != "req-ann" {
			t.Errorf("record %d = %+v, want msg %q level %q fn talk rid req-ann", i, got, w.msg, w.lvl)
		}
	}

	// Two requests in flight at once: each line carries its own request id.
	var wg sync.WaitGroup
	for _, who := range []string{"bob", "cy"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := r.send(context.Background(), call{fn: "talk", path: "?who=" + who + "&wait=50",
				header: map[string]string{"X-Request-Id": "req-" + who}})
			if err != nil || rep.status != 200 {
				t.Errorf("request %s: %v %d", who, err, rep.status)
			}
		}()
	}
	wg.Wait()
	recs = waitRecords(t, r, "both delayed lines", func(rs []logRecord) bool {
		_, b := find(rs, "later bob")
		_, c := find(rs, "later cy")
		return b && c
	})
	for _, who := range []string{"bob", "cy"} {
		for _, msg := range []string{"hello " + who, "later " + who} {
			rec, _ := find(recs, msg)
			if rec.Rid != "req-"+who || rec.Fn != "talk" {
				t.Errorf("%q tagged %+v, want rid req-%s", msg, rec, who)
			}
		}
	}

	r.do(t, call{fn: "rr", header: map[string]string{"X-Request-Id": "req-rr"}}).expect(t, 200, "webtask")
	recs = waitRecords(t, r, "the (ctx, req, res) line", func(rs []logRecord) bool { _, ok := find(rs, "from rr"); return ok })
	if rec, _ := find(recs, "from rr"); rec.Fn != "rr" || rec.Rid != "req-rr" {
		t.Fatalf("(ctx, req, res) line tagged %+v", rec)
	}
}

// Invariant: a request with a body keeps its function and request id in the
// output of code run from the body's events, warm or cold, in the callback
// forms and in a (ctx, req, res) function's own listeners (those events come
// from the socket, not from the request's async context).
func TestConsoleOutputWithBodyIsTagged(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "cb", 1, `module.exports = function (ctx, cb) { console.log('cb x=' + ctx.body.x); cb(null, {}) }`)
	r.deploy(t, "ex", 1, `module.exports = function (ctx, req, res) {
  let n = 0;
  req.on('data', (d) => { n += d.length });
  req.on('end', () => { console.log('ex got ' + n + ' ' + ctx.id); res.end('ok') });
}`)
	for i := range 3 { // the first request of each loads the function; the others find it loaded
		for _, fn := range []string{"cb", "ex"} {
			rid := fmt.Sprintf("%s-%d", fn, i)
			r.do(t, call{fn: fn, method: "POST", contentType: "application/json", body: fmt.Sprintf(`{"x":%d}`, i),
				header: map[string]string{"X-Request-Id": rid}}).expect(t, 200, "webtask")
		}
	}
	recs := waitRecords(t, r, "six lines", func(rs []logRecord) bool { return len(rs) >= 6 })
	for _, rec := range recs {
		var want string
		switch {
		case strings.HasPrefix(rec.Msg, "cb x="):
			want = "cb-" + strings.TrimPrefix(rec.Msg, "cb x=")
		case strings.HasPrefix(rec.Msg, "ex got "):
			want = rec.Msg[strings.LastIndexByte(rec.Msg, ' ')+1:]
		default:
			t.Fatalf("unexpected record %+v", rec)
		}
		if rec.Rid != want || !strings.HasPrefix(want, rec.Fn+"-") {
			t.Errorf("record %+v: want rid %s and its function", rec, want)
		}
	}
}

// Invariant: a huge message is cut, console.trace carries a stack, and
// arguments whose formatting throws never fail the request.
func TestConsoleEdgeCases(t *testing.T) {
	t.Parallel()
	r := startRunner(t)
	r.deploy(t, "edge", 1, `module.exports = function (ctx, cb) {
  console.log('x'.repeat(20000));
  console.trace('where');
  const hostile = { [require('util').inspect.custom]() { throw new Error('no inspect') } };
  console.log(hostile);
  console.dir(hostile, {customInspect: true});
  cb(null, 'fine');
}`)
	r.do(t, call{fn: "edge", header: map[string]string{"X-Request-Id": "req-edge"}}).expect(t, 200, "webtask")
	recs := waitRecords(t, r, "four records", func(rs []logRecord) bool { return len(rs) >= 4 })
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4: %+v", len(recs), recs)
	}
	if !strings.HasPrefix(recs[0].Msg, strings.Repeat("x", 8192)+"... [11808 more characters cut]") || len(recs[0].Msg) > 8300 {
		t.Errorf("long message not cut: %d characters", len(recs[0].Msg))
	}
	if recs[1].Lvl != "error" || !strings.HasPrefix(recs[1].Msg, "Trace: where\n") || !strings.Contains(recs[1].Msg, "function.js") {
		t.Errorf("trace record %+v", recs[1])
	}
	for _, rec := range recs[2:] {
		if !strings.Contains(rec.Msg, "no inspect") || rec.Rid != "req-edge" {
			t.Errorf("hostile argument record %+v", rec)
		}
	}
	r.assertAlive(t)
}

// Invariant: a flood of output is rate-limited inside the container: at most
// the burst passes at once and every dropped line is counted in a "system"
// record, so the host never has to read the flood.
func TestConsoleFloodIsRateLimited(t *testing.T) {
	t.Parallel()
	r := startRunner(t, "WHARF_LOG_RATE=10")
	r.deploy(t, "flood", 1, `module.exports = function (ctx, cb) {
  for (let i = 0; i < 5000; i++) console.log('line ' + i);
  cb(null, 'done');
}`)
	start := time.Now()
	r.do(t, call{fn: "flood"}).expect(t, 200, "webtask")
	recs := waitRecords(t, r, "the dropped-lines notice", func(rs []logRecord) bool {
		for _, rec := range rs {
			if rec.Lvl == "system" {
				return true
			}
		}
		return false
	})
	elapsed := time.Since(start).Seconds()
	var written, dropped int
	for _, rec := range recs {
		switch rec.Lvl {
		case "log":
			written++
		case "system":
			if _, err := fmt.Sscanf(rec.Msg, "%d log line(s) dropped", &dropped); err != nil {
				t.Fatalf("notice %q: %v", rec.Msg, err)
			}
			if rec.Fn != "" || rec.Rid != "" {
				t.Errorf("notice tagged as a function's: %+v", rec)
			}
		}
	}
	// Burst of 20 plus 10 per second while the loop ran.
	if max := 20 + int(10*elapsed) + 1; written > max || written < 20 {
		t.Fatalf("%d lines written, want 20..%d", written, max)
	}
	if written+dropped != 5000 {
		t.Fatalf("written %d + dropped %d != 5000", written, dropped)
	}
	// The bucket refills: a later line gets through again.
	time.Sleep(300 * time.Millisecond)
	r.deploy(t, "after", 1, `module.exports = cb => { console.log('after the flood'); cb() }`)
	r.do(t, call{fn: "after"}).expect(t, 200, "webtask")
	waitRecords(t, r, "a line after the flood", func(rs []logRecord) bool { _, ok := find(rs, "after the flood"); return ok })
}
