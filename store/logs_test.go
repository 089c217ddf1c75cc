package store

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func line(at time.Time, fn, msg string) LogLine {
	return LogLine{Time: at, Function: fn, RequestID: "r-" + msg, Level: "log", Message: msg}
}

func messages(ls []LogLine) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.Message)
	}
	return out
}

// Invariant: history is per tenant incarnation, newest lines win, lines of
// several nodes' chunks come back in time order, a function filter keeps
// system lines, and deleting the tenant deletes its history.
func TestLogsHistory(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	acme := mustTenant(t, s, "acme")
	globex := mustTenant(t, s, "globex")
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

	// Node a flushed lines 0,2; node b (a clock-independent flush time) 1,3.
	chunks := []LogChunk{
		{Tenant: "acme", TenantUID: acme.UID, Node: "a", At: at(10), Lines: []LogLine{line(at(0), "f", "m0"), line(at(2), "g", "m2")}},
		{Tenant: "acme", TenantUID: acme.UID, Node: "b", At: at(11), Lines: []LogLine{line(at(1), "f", "m1"), line(at(3), "f", "m3")}},
		{Tenant: "acme", TenantUID: acme.UID, Node: "a", At: at(12), Lines: []LogLine{{Time: at(4), Level: "system", Message: "sys"}}},
		{Tenant: "globex", TenantUID: globex.UID, Node: "a", At: at(12), Lines: []LogLine{line(at(5), "f", "other")}},
		{Tenant: "acme", TenantUID: "previous-incarnation", Node: "a", At: at(13), Lines: []LogLine{line(at(6), "f", "stale")}},
	}
	for _, c := range chunks {
		if err := s.AppendLogs(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendLogs(ctx, LogChunk{Tenant: "acme", TenantUID: acme.UID}); err != nil {
		t.Fatalf("empty chunk: %v", err)
	}
	if n := count(t, s, CollLogs, bson.D{}); n != 5 {
		t.Fatalf("%d chunks stored, want 5 (an empty one is not stored)", n)
	}

	cases := []struct {
		name string
		q    LogQuery
		want []string
	}{
		{"all", LogQuery{Tenant: "acme", TenantUID: acme.UID, Limit: 100}, []string{"m0", "m1", "m2", "m3", "sys"}},
		{"newest two", LogQuery{Tenant: "acme", TenantUID: acme.UID, Limit: 2}, []string{"m3", "sys"}},
		{"one function", LogQuery{Tenant: "acme", TenantUID: acme.UID, Function: "f", Limit: 100}, []string{"m0", "m1", "m3", "sys"}},
		{"no lines asked", LogQuery{Tenant: "acme", TenantUID: acme.UID, Limit: 0}, []string{}},
		{"other tenant", LogQuery{Tenant: "globex", TenantUID: globex.UID, Limit: 100}, []string{"other"}},
		{"wrong incarnation", LogQuery{Tenant: "globex", TenantUID: acme.UID, Limit: 100}, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.RecentLogs(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !slices.Equal(messages(got), c.want) {
				t.Fatalf("got %q, want %q", messages(got), c.want)
			}
		})
	}
	got, _ := s.RecentLogs(ctx, LogQuery{Tenant: "acme", TenantUID: acme.UID, Limit: 1})
	if got[0].Time != at(4) || got[0].Level != "system" {
		t.Fatalf("line read back %+v", got[0])
	}

	peers, err := s.LogChunksSince(ctx, "acme", acme.UID, at(11), "a")
	if err != nil || len(peers) != 1 || peers[0].Node != "b" || peers[0].Count != 2 || peers[0].Bytes != 4 {
		t.Fatalf("chunks of other nodes: %+v %v", peers, err)
	}

	if err := s.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, CollLogs, bson.D{{Key: "tenant", Value: "acme"}}); n != 0 {
		t.Fatalf("%d chunks of a deleted tenant left", n)
	}
	if n := count(t, s, CollLogs, bson.D{{Key: "tenant", Value: "globex"}}); n != 1 {
		t.Fatalf("deleting acme touched globex's logs: %d chunks", n)
	}
}

// Invariant: chunks one node flushed within a millisecond (the resolution of
// the stored "at") keep their flush order: a tenant's newest lines are the last
// chunk's, and a peer streaming the chunks gets them in order. With random
// chunk ids either came out in any order (a flake of ?tail=1 in mgmt's tests).
func TestLogChunksWithinAMillisecond(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// Eight tenants, three chunks each: by chance alone all eight would come
	// out in order once in 3^8.
	for i := range 8 {
		name := fmt.Sprintf("ms%d", i)
		ten := mustTenant(t, s, name)
		for j, msg := range []string{"one", "two", "three"} {
			at := base.Add(time.Duration(j) * time.Microsecond) // one millisecond
			c := LogChunk{Tenant: name, TenantUID: ten.UID, Node: "a", At: at, Lines: []LogLine{line(base, "f", msg)}}
			if err := s.AppendLogs(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.RecentLogs(ctx, LogQuery{Tenant: name, TenantUID: ten.UID, Limit: 1})
		if err != nil || !slices.Equal(messages(got), []string{"three"}) {
			t.Fatalf("%s: newest line %v (%v), want three", name, messages(got), err)
		}
		got, err = s.RecentLogs(ctx, LogQuery{Tenant: name, TenantUID: ten.UID, Limit: 2})
		if err != nil || !slices.Equal(messages(got), []string{"two", "three"}) {
			t.Fatalf("%s: newest two %v (%v)", name, messages(got), err)
		}
		chunks, err := s.LogChunksSince(ctx, name, ten.UID, base, "b")
		var streamed []string
		for _, c := range chunks {
			streamed = append(streamed, messages(c.Lines)...)
		}
		if err != nil || !slices.Equal(streamed, []string{"one", "two", "three"}) {
			t.Fatalf("%s: streamed %v (%v)", name, streamed, err)
		}
	}
}

func TestChunksBeyond(t *testing.T) {
	heads := []LogChunk{{ID: "c5", Count: 3, Bytes: 30}, {ID: "c4", Count: 3, Bytes: 30}, {ID: "c3", Count: 3, Bytes: 300},
		{ID: "c2", Count: 3, Bytes: 30}, {ID: "c1", Count: 3, Bytes: 30}}
	big := 1 << 30
	cases := []struct {
		name string
		lim  LogLimits
		want []string
	}{
		{"nothing beyond", LogLimits{Lines: big, Bytes: big, Chunks: big}, nil},
		{"lines: whole chunks until reached", LogLimits{Lines: 6, Bytes: big, Chunks: big}, []string{"c3", "c2", "c1"}},
		{"lines: a chunk crossing the limit stays", LogLimits{Lines: 7, Bytes: big, Chunks: big}, []string{"c2", "c1"}},
		{"bytes", LogLimits{Lines: big, Bytes: 100, Chunks: big}, []string{"c2", "c1"}},
		{"chunks", LogLimits{Lines: big, Bytes: big, Chunks: 1}, []string{"c4", "c3", "c2", "c1"}},
		{"zero keeps nothing", LogLimits{}, []string{"c5", "c4", "c3", "c2", "c1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := chunksBeyond(heads, c.lim); !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

// Invariant: trimming keeps the newest chunks within the limits and only the
// tenant's; expiry removes chunks by age across tenants.
func TestTrimAndExpireLogs(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	acme := mustTenant(t, s, "acme")
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 10 {
		c := LogChunk{Tenant: "acme", TenantUID: acme.UID, Node: "a", At: base.Add(time.Duration(i) * time.Minute),
			Lines: []LogLine{line(base, "f", fmt.Sprintf("a%d", i)), line(base, "f", fmt.Sprintf("b%d", i))}}
		if err := s.AppendLogs(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendLogs(ctx, LogChunk{Tenant: "globex", TenantUID: "u", Node: "a", At: base,
		Lines: []LogLine{line(base, "f", "g")}}); err != nil {
		t.Fatal(err)
	}
	n, err := s.TrimLogs(ctx, "acme", LogLimits{Lines: 5, Bytes: 1 << 20, Chunks: 100})
	if err != nil || n != 7 {
		t.Fatalf("trim deleted %d (%v), want 7 (3 chunks of 2 lines cover 5 lines)", n, err)
	}
	got, _ := s.RecentLogs(ctx, LogQuery{Tenant: "acme", TenantUID: acme.UID, Limit: 100})
	if !slices.Equal(messages(got), []string{"a7", "b7", "a8", "b8", "a9", "b9"}) {
		t.Fatalf("after trim %q", messages(got))
	}
	if n, err := s.TrimLogs(ctx, "acme", LogLimits{Lines: 5, Bytes: 1 << 20, Chunks: 100}); err != nil || n != 0 {
		t.Fatalf("second trim deleted %d (%v)", n, err)
	}
	n, err = s.ExpireLogs(ctx, base.Add(8*time.Minute+time.Second))
	if err != nil || n != 3 {
		t.Fatalf("expire deleted %d (%v), want 3 (acme's 7th and 8th, globex's)", n, err)
	}
	if c := count(t, s, CollLogs, bson.D{}); c != 1 {
		t.Fatalf("%d chunks left, want 1", c)
	}
}
