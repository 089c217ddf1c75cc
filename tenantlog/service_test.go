package tenantlog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/engine/enginetest"
	"github.com/wharfhq/wharf/store"
	"github.com/wharfhq/wharf/store/storetest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore starts an embedded store (real FerretDB) with tenants acme and globex.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	ctx := testCtx(t)
	st := storetest.New(t, 4)
	for _, name := range []string{"acme", "globex"} {
		if _, err := st.CreateTenant(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func newService(t *testing.T, st Store, eng Engine, cfg Config) *Service {
	t.Helper()
	if cfg.NodeID == "" {
		cfg.NodeID = "n1"
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 50 * time.Millisecond
	}
	if cfg.PeerPoll == 0 {
		cfg.PeerPoll = 50 * time.Millisecond
	}
	s := New(cfg, st, eng, slog.New(slog.NewTextHandler(t.Output(), nil)))
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// startContainer is a running container of the fake engine.
func startContainer(t *testing.T, f *enginetest.Fake, name string) string {
	t.Helper()
	id, err := f.CreateContainer(context.Background(), engine.ContainerSpec{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.StartContainer(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	return id
}

func record(fn, rid, lvl, msg string) string {
	b, _ := json.Marshal(map[string]string{"t": time.Now().UTC().Format(time.RFC3339Nano), "lvl": lvl, "fn": fn, "rid": rid, "msg": msg})
	return string(b) + "\n"
}

// next waits for the next line of a subscription.
func next(t *testing.T, sub *Subscription) store.LogLine {
	t.Helper()
	select {
	case l := <-sub.Lines():
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no line within 5 s")
		return store.LogLine{}
	}
}

func nothing(t *testing.T, sub *Subscription, wait time.Duration) {
	t.Helper()
	select {
	case l := <-sub.Lines():
		t.Fatalf("unexpected line %+v", l)
	case <-time.After(wait):
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func msgs(ls []store.LogLine) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.Message)
	}
	return out
}

// Invariant: a container's output reaches its own tenant's live streams
// (tagged by the runner, filtered by function) and history, never another
// tenant's, whatever a line claims.
func TestFollowStreamsAndKeepsHistory(t *testing.T) {
	st := newStore(t)
	f := enginetest.New()
	s := newService(t, st, f, Config{})
	ctx := testCtx(t)

	acmeAll, err := s.Subscribe(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	defer acmeAll.Close()
	acmeHook, _ := s.Subscribe(ctx, "acme", "hook")
	defer acmeHook.Close()
	globex, _ := s.Subscribe(ctx, "globex", "")
	defer globex.Close()
	if _, err := s.Subscribe(ctx, "nobody", ""); err == nil {
		t.Fatal("subscribed to a tenant that does not exist")
	}

	a := startContainer(t, f, "a")
	g := startContainer(t, f, "g")
	s.Follow("acme", a, time.Time{})
	s.Follow("globex", g, time.Time{})

	f.EmitLog(a, false, record("hook", "r1", "log", "hello from hook"))
	f.EmitLog(a, false, record("other", "r2", "error", "from other"))
	f.EmitLog(a, false, "raw write\n")
	f.EmitLog(a, true, "[wharf-runner] warmed up in 300 ms\n") // late start-up line: nobody's
	f.EmitLog(a, true, "[wharf-runner] diagnostics\n")
	// A line of acme's code pretending to be globex's stays acme's.
	f.EmitLog(a, false, `{"t":"x","lvl":"log","fn":"hook","rid":"r9","msg":"i am globex","tenant":"globex"}`+"\n")
	f.EmitLog(g, false, record("hook", "g1", "log", "globex line"))

	want := []store.LogLine{
		{Function: "hook", RequestID: "r1", Level: "log", Message: "hello from hook"},
		{Function: "other", RequestID: "r2", Level: "error", Message: "from other"},
		{Level: LevelStdout, Message: "raw write"},
		{Level: LevelStderr, Message: "[wharf-runner] diagnostics"},
		{Level: LevelStdout, Message: `{"t":"x","lvl":"log","fn":"hook","rid":"r9","msg":"i am globex","tenant":"globex"}`},
	}
	for i, w := range want {
		got := next(t, acmeAll)
		got.Time = time.Time{}
		if got != w {
			t.Fatalf("acme line %d = %+v, want %+v", i, got, w)
		}
	}
	if l := next(t, acmeHook); l.Message != "hello from hook" {
		t.Fatalf("function view got %+v", l)
	}
	nothing(t, acmeHook, 100*time.Millisecond)
	if l := next(t, globex); l.Message != "globex line" {
		t.Fatalf("globex got %+v", l)
	}
	nothing(t, globex, 100*time.Millisecond)

	// History: at once (unflushed lines of this node count), then from the store.
	recent, err := s.Recent(ctx, "acme", "hook", 10)
	if err != nil || strings.Join(msgs(recent), "|") != "hello from hook" {
		t.Fatalf("recent of hook: %q %v", msgs(recent), err)
	}
	eventually(t, "acme's lines in the store", func() bool {
		uid := tenantUID(t, st, "acme")
		ls, _ := st.RecentLogs(ctx, store.LogQuery{Tenant: "acme", TenantUID: uid, Limit: 10})
		return len(ls) == 5
	})
	recent, _ = s.Recent(ctx, "acme", "", 2)
	if got := strings.Join(msgs(recent), "|"); !strings.Contains(got, "i am globex") || len(recent) != 2 {
		t.Fatalf("newest two of acme: %q", got)
	}
	recent, _ = s.Recent(ctx, "globex", "", 10)
	if got := strings.Join(msgs(recent), "|"); got != "globex line" {
		t.Fatalf("globex history: %q", got)
	}

	// The containers go: their followers end (with the streams closed,
	// nothing else of the service runs).
	acmeAll.Close()
	acmeHook.Close()
	globex.Close()
	_ = f.RemoveContainer(ctx, a)
	_ = f.RemoveContainer(ctx, g)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("followers still running after their containers were removed")
	}
}

func tenantUID(t *testing.T, st *store.Store, name string) string {
	t.Helper()
	tn, err := st.GetTenant(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return tn.UID
}

// Invariant: a tenant flooding output is held to the rate on the node
// (whatever the runner let through, e.g. raw process.stdout writes); the
// lines dropped are counted in a system notice, streamed and kept.
func TestFloodIsRateLimited(t *testing.T) {
	st := newStore(t)
	f := enginetest.New()
	clock := time.Now()
	s := newService(t, st, f, Config{Rate: 5, Clock: func() time.Time { return clock }})
	ctx := testCtx(t)
	sub, _ := s.Subscribe(ctx, "acme", "")
	defer sub.Close()
	a := startContainer(t, f, "a")
	s.Follow("acme", a, time.Time{})
	var flood strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&flood, "line %d\n", i)
	}
	f.EmitLog(a, false, flood.String())
	for i := range 10 { // the burst: twice the rate
		if l := next(t, sub); l.Message != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d = %+v", i, l)
		}
	}
	l := next(t, sub)
	if l.Level != LevelSystem || l.Message != "990 log lines dropped on node n1: more than 5 lines per second." {
		t.Fatalf("notice %+v", l)
	}
	eventually(t, "the notice in the history", func() bool {
		ls, _ := st.RecentLogs(ctx, store.LogQuery{Tenant: "acme", TenantUID: tenantUID(t, st, "acme"), Function: "f", Limit: 100})
		return len(ls) == 1 && ls[0].Level == LevelSystem // a function view keeps system lines
	})
}

// Invariant: history in the store stays within its limits however much a
// tenant writes over time.
func TestHistoryIsTrimmed(t *testing.T) {
	st := newStore(t)
	f := enginetest.New()
	s := newService(t, st, f, Config{Rate: 100000, HistoryLines: 40})
	a := startContainer(t, f, "a")
	s.Follow("acme", a, time.Time{})
	ctx := testCtx(t)
	uid := tenantUID(t, st, "acme")
	for round := range 10 {
		var b strings.Builder
		for i := range 30 {
			b.WriteString(record("f", "r", "log", fmt.Sprintf("%d-%d", round, i)))
		}
		f.EmitLog(a, false, b.String())
		want := fmt.Sprintf("%d-29", round)
		eventually(t, "round "+want+" stored", func() bool {
			ls, _ := st.RecentLogs(ctx, store.LogQuery{Tenant: "acme", TenantUID: uid, Limit: 1})
			return len(ls) == 1 && ls[0].Message == want
		})
	}
	// Trimming (after each write here) keeps whole chunks: chunks are kept
	// while the newer ones hold fewer than 40 lines, and one holds at most 30.
	var all []store.LogLine
	eventually(t, "the last trim", func() bool {
		all, _ = st.RecentLogs(ctx, store.LogQuery{Tenant: "acme", TenantUID: uid, Limit: 100000})
		return len(all) >= 40 && len(all) < 40+30
	})
	if all[len(all)-1].Message != "9-29" {
		t.Fatalf("newest line %q", all[len(all)-1].Message)
	}
}

// Invariant: a live stream on one node shows what the tenant's container on
// another node prints (through the store), and the history any node serves
// holds both nodes' lines.
func TestPeersOutputReachesStreams(t *testing.T) {
	st := newStore(t)
	fa, fb := enginetest.New(), enginetest.New()
	na := newService(t, st, fa, Config{NodeID: "na"})
	nb := newService(t, st, fb, Config{NodeID: "nb"})
	ctx := testCtx(t)
	sub, err := na.Subscribe(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	b := startContainer(t, fb, "b")
	nb.Follow("acme", b, time.Time{})
	fb.EmitLog(b, false, record("hook", "rb", "log", "printed on nb"))
	if l := next(t, sub); l.Message != "printed on nb" || l.RequestID != "rb" {
		t.Fatalf("stream on na got %+v", l)
	}
	nothing(t, sub, 300*time.Millisecond) // delivered once
	a := startContainer(t, fa, "a")
	na.Follow("acme", a, time.Time{})
	fa.EmitLog(a, false, record("hook", "ra", "log", "printed on na"))
	if l := next(t, sub); l.Message != "printed on na" {
		t.Fatalf("stream on na got %+v", l)
	}
	eventually(t, "both lines in nb's history", func() bool {
		ls, _ := nb.Recent(ctx, "acme", "", 10)
		return strings.Join(msgs(ls), "|") == "printed on nb|printed on na"
	})
}

// Invariant: shutting down ends every live stream, refuses new followers
// and flushes what was buffered.
func TestCloseEndsStreamsAndFlushes(t *testing.T) {
	st := newStore(t)
	f := enginetest.New()
	s := newService(t, st, f, Config{FlushInterval: time.Hour})
	ctx := testCtx(t)
	sub, _ := s.Subscribe(ctx, "acme", "")
	a := startContainer(t, f, "a")
	s.Follow("acme", a, time.Time{})
	f.EmitLog(a, false, record("f", "r", "log", "buffered"))
	next(t, sub)
	s.CloseStreams()
	select {
	case <-sub.Done():
	case <-time.After(time.Second):
		t.Fatal("stream not ended by CloseStreams")
	}
	late, _ := s.Subscribe(ctx, "acme", "")
	select {
	case <-late.Done():
	default:
		t.Fatal("a stream opened after CloseStreams is not ended")
	}
	s.Close(ctx)
	ls, _ := st.RecentLogs(ctx, store.LogQuery{Tenant: "acme", TenantUID: tenantUID(t, st, "acme"), Limit: 10})
	if strings.Join(msgs(ls), "|") != "buffered" {
		t.Fatalf("not flushed at close: %q", msgs(ls))
	}
	s.Follow("acme", a, time.Time{}) // after Close: ignored, no goroutine left running
	s.wg.Wait()
}

// Invariant: a slow reader never blocks the node: lines beyond its buffer
// are dropped for it alone and it is told how many.
func TestSlowSubscriberDropsAndIsTold(t *testing.T) {
	h := newHub()
	slow := h.subscribe("acme", "u", "", nil)
	fast := h.subscribe("acme", "u", "", nil)
	other := h.subscribe("acme", "old-incarnation", "", nil)
	total := subscriberBuffer + 10
	go func() {
		for range fast.Lines() {
		}
	}()
	for i := range total {
		h.publish("acme", "u", store.LogLine{Level: "log", Message: fmt.Sprint(i)})
	}
	for i := range subscriberBuffer {
		if l := <-slow.Lines(); l.Message != fmt.Sprint(i) {
			t.Fatalf("line %d = %q", i, l.Message)
		}
	}
	h.publish("acme", "u", store.LogLine{Level: "log", Message: "after"})
	if l := <-slow.Lines(); l.Level != LevelSystem || l.Message != "10 log line(s) not shown: this stream could not keep up." {
		t.Fatalf("notice %+v", l)
	}
	if l := <-slow.Lines(); l.Message != "after" {
		t.Fatalf("after the notice: %+v", l)
	}
	select {
	case l := <-other.Lines():
		t.Fatalf("another incarnation of the tenant got %+v", l)
	default:
	}
	slow.Close()
	slow.Close()
	fast.Close()
	other.Close()
	if n := h.subscribers(); n != 0 {
		t.Fatalf("%d subscribers left", n)
	}
}

// endsEarly is an engine whose first output stream ends (without an error)
// while the container still runs, as engines sometimes do.
type endsEarly struct {
	*enginetest.Fake
	calls atomic.Int32
}

func (e *endsEarly) FollowLogs(ctx context.Context, id string, since time.Time, stdout, stderr io.Writer) error {
	if e.calls.Add(1) > 1 {
		return e.Fake.FollowLogs(ctx, id, since, stdout, stderr)
	}
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	_ = e.Fake.FollowLogs(short, id, since, stdout, stderr)
	return nil
}

// Invariant: an output stream that ends while its container still runs is
// followed again, from the last line received: nothing lost, nothing repeated.
func TestStreamEndingEarlyIsFollowedAgain(t *testing.T) {
	st := newStore(t)
	eng := &endsEarly{Fake: enginetest.New()}
	s := newService(t, st, eng, Config{})
	sub, _ := s.Subscribe(testCtx(t), "acme", "")
	defer sub.Close()
	a := startContainer(t, eng.Fake, "a")
	s.Follow("acme", a, time.Time{})
	eng.EmitLog(a, false, record("f", "r1", "log", "before the end"))
	if l := next(t, sub); l.Message != "before the end" {
		t.Fatalf("got %+v", l)
	}
	eventually(t, "the stream to end and be followed again", func() bool { return eng.calls.Load() >= 2 })
	eng.EmitLog(a, false, record("f", "r2", "log", "after the end"))
	if l := next(t, sub); l.Message != "after the end" {
		t.Fatalf("got %+v (a repeat, or nothing)", l)
	}
	nothing(t, sub, 200*time.Millisecond)
	// A container that stopped is not followed again.
	eng.Kill(a, 0)
	done := make(chan struct{})
	go func() { sub.Close(); s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("still following a stopped container")
	}
}

// Invariant: with FollowDelay, a container's output is not read before the
// delay (the tenant's first request has the CPU), yet every line written
// since the claim, during the delay too, reaches the tenant; and Close does
// not wait out a delay.
func TestFollowDelayLosesNothing(t *testing.T) {
	st := newStore(t)
	f := enginetest.New()
	const delay = 300 * time.Millisecond
	s := newService(t, st, f, Config{FollowDelay: delay})
	sub, err := s.Subscribe(testCtx(t), "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	a := startContainer(t, f, "a")
	f.EmitLog(a, false, record("f", "r0", "log", "before the claim")) // the runner's, before the tenant had it
	time.Sleep(5 * time.Millisecond)
	claimed := time.Now()
	s.Follow("acme", a, claimed)
	f.EmitLog(a, false, record("f", "r1", "log", "during the first request"))
	time.Sleep(delay / 2)
	if n := f.Count("FollowLogs"); n != 0 {
		t.Fatalf("the output was read %d times within the delay", n)
	}
	l := next(t, sub)
	if l.Message != "during the first request" {
		t.Fatalf("first line %+v, want the one written during the delay (and nothing from before the claim)", l)
	}
	if waited := time.Since(claimed); waited < delay {
		t.Fatalf("the first line came %v after the claim, before the %v delay", waited, delay)
	}
	f.EmitLog(a, false, record("f", "r2", "log", "after the delay"))
	if l := next(t, sub); l.Message != "after the delay" {
		t.Fatalf("got %+v", l)
	}

	// A follow still in its delay ends with Close at once.
	b := startContainer(t, f, "b")
	s.Follow("acme", b, time.Now())
	sub.Close()
	closed := make(chan struct{})
	go func() { s.Close(context.Background()); close(closed) }()
	select {
	case <-closed:
	case <-time.After(delay / 2):
		t.Fatal("Close waited for a follow's delay")
	}
}
