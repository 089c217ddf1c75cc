package mgmt

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/engine/enginetest"
	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/store"
	"github.com/wharfhq/wharf/tenantlog"
)

// logsEnv is an env whose logs come from a real tenantlog.Service over the
// env's store, following containers of a fake engine.
type logsEnv struct {
	*env
	svc *tenantlog.Service
	eng *enginetest.Fake
}

func newLogsEnv(t *testing.T) *logsEnv {
	t.Helper()
	le := &logsEnv{eng: enginetest.New()}
	le.env = newEnvFull(t, Config{}, func(s Store) Store { return s }, func(st *store.Store) Logs {
		le.svc = tenantlog.New(tenantlog.Config{NodeID: "n1", FlushInterval: 20 * time.Millisecond, PeerPoll: 20 * time.Millisecond}, st, le.eng, nil)
		t.Cleanup(func() { le.svc.Close(context.Background()) })
		return le.svc
	})
	return le
}

// container starts a fake container whose output is followed as tenant's.
func (le *logsEnv) container(tenant string) string {
	le.t.Helper()
	id, err := le.eng.CreateContainer(context.Background(), engine.ContainerSpec{Name: tenant + "-c"})
	if err != nil {
		le.t.Fatal(err)
	}
	_ = le.eng.StartContainer(context.Background(), id)
	le.svc.Follow(tenant, id, time.Time{})
	return id
}

func logRecord(fn, rid, msg string) string {
	b, _ := json.Marshal(map[string]string{"t": time.Now().UTC().Format(time.RFC3339Nano), "lvl": "log", "fn": fn, "rid": rid, "msg": msg})
	return string(b) + "\n"
}

// history asks for the history as JSON.
func (le *logsEnv) history(token, tenant, query string) []store.LogLine {
	le.t.Helper()
	var out []store.LogLine
	le.do("GET", "/tenants/"+tenant+"/logs?follow=false"+query, token, nil).want(le.t, http.StatusOK, &out)
	return out
}

func messagesOf(ls []store.LogLine) string {
	var m []string
	for _, l := range ls {
		m = append(m, l.Message)
	}
	return strings.Join(m, "|")
}

// Invariant: the history endpoint gives a tenant its own lines only (newest
// `tail`, one function's with ?function=), the admin any tenant's, and
// refuses bad parameters and other tenants with the documented errors.
func TestLogsHistory(t *testing.T) {
	le := newLogsEnv(t)
	acme := le.mustTenant("acme")
	globex := le.mustTenant("globex")
	a := le.container("acme")
	g := le.container("globex")
	le.eng.EmitLog(a, false, logRecord("hook", "r1", "one")+logRecord("other", "r2", "two")+logRecord("hook", "r3", "three"))
	le.eng.EmitLog(g, false, logRecord("hook", "g1", "globex secret business"))

	deadline := time.Now().Add(5 * time.Second)
	for messagesOf(le.history(acme, "acme", "")) != "one|two|three" {
		if time.Now().After(deadline) {
			t.Fatalf("acme's history: %q", messagesOf(le.history(acme, "acme", "")))
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := le.history(acme, "acme", "&function=hook")
	if messagesOf(got) != "one|three" || got[0].Function != "hook" || got[0].RequestID != "r1" || got[0].Level != "log" {
		t.Fatalf("hook's history: %+v", got)
	}
	if m := messagesOf(le.history(acme, "acme", "&tail=1")); m != "three" {
		t.Fatalf("tail=1: %q", m)
	}
	if m := messagesOf(le.history(acme, "acme", "&tail=0")); m != "" {
		t.Fatalf("tail=0: %q", m)
	}
	if m := messagesOf(le.history(testAdminToken, "globex", "")); m != "globex secret business" {
		t.Fatalf("admin reading globex: %q", m)
	}
	if m := messagesOf(le.history(globex, "globex", "")); strings.Contains(m, "one") {
		t.Fatalf("globex sees acme's lines: %q", m)
	}

	bad := []struct {
		name, token, path string
		status            int
		code              string
	}{
		{"no token", "", "/tenants/acme/logs?follow=false", 401, "unauthorized"},
		{"another tenant's", globex, "/tenants/acme/logs?follow=false", 404, "tenant_not_found"},
		{"another tenant's stream", globex, "/tenants/acme/logs", 404, "tenant_not_found"},
		{"unknown tenant (admin)", testAdminToken, "/tenants/nobody/logs", 404, "tenant_not_found"},
		{"bad tail", acme, "/tenants/acme/logs?tail=-1", 400, "invalid_tail"},
		{"huge tail", acme, "/tenants/acme/logs?tail=10001", 400, "invalid_tail"},
		{"tail not a number", acme, "/tenants/acme/logs?tail=ten", 400, "invalid_tail"},
		{"bad follow", acme, "/tenants/acme/logs?follow=maybe", 400, "invalid_follow"},
		{"bad function", acme, "/tenants/acme/logs?function=" + url.QueryEscape("../x"), 400, "invalid_function_name"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			le.do("GET", c.path, c.token, nil).wantErr(t, c.status, c.code)
		})
	}
}

// Invariant: without a log service the endpoint says so (501), after the
// same access checks as always.
func TestLogsUnavailable(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	e.do("GET", "/tenants/acme/logs", acme, nil).wantErr(t, http.StatusNotImplemented, "logs_unavailable")
	e.do("GET", "/tenants/other/logs", acme, nil).wantErr(t, http.StatusNotFound, "tenant_not_found")
}

// sseEvent is one server-sent event.
type sseEvent struct{ event, data string }

// readEvents parses server-sent events from a stream onto a channel.
func readEvents(body *bufio.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		var ev sseEvent
		for {
			line, err := body.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if ev.event != "" || ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

func nextLog(t *testing.T, ch <-chan sseEvent) store.LogLine {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		if ev.event != "log" {
			t.Fatalf("event %q, want log", ev.event)
		}
		var l store.LogLine
		if err := json.Unmarshal([]byte(ev.data), &l); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	return store.LogLine{}
}

// Invariant: the stream sends the history first, then live lines of the
// tenant (of one function when asked) as they are printed, each line once;
// it ends with an "end" event when the node closes streams, and a client
// leaving releases its subscription.
func TestLogsStream(t *testing.T) {
	le := newLogsEnv(t)
	acme := le.mustTenant("acme")
	le.mustTenant("globex")
	srv := httptest.NewServer(le.echo)
	defer srv.Close()
	a := le.container("acme")
	g := le.container("globex")
	le.eng.EmitLog(a, false, logRecord("hook", "r0", "before"))
	for messagesOf(le.history(acme, "acme", "")) != "before" {
		time.Sleep(10 * time.Millisecond)
	}

	open := func(query string) (*http.Response, <-chan sseEvent) {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/tenants/acme/logs"+query, nil)
		req.Header.Set("Authorization", "Bearer "+acme)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("stream answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return resp, readEvents(bufio.NewReader(resp.Body))
	}
	all, allEv := open("")
	defer all.Body.Close()
	hook, hookEv := open("?function=hook&tail=0")
	defer hook.Body.Close()

	if l := nextLog(t, allEv); l.Message != "before" || l.RequestID != "r0" {
		t.Fatalf("history line %+v", l)
	}
	le.eng.EmitLog(g, false, logRecord("hook", "g1", "globex only"))
	le.eng.EmitLog(a, false, logRecord("other", "r1", "live other"))
	le.eng.EmitLog(a, false, logRecord("hook", "r2", "live hook"))
	if l := nextLog(t, allEv); l.Message != "live other" {
		t.Fatalf("live line %+v", l)
	}
	if l := nextLog(t, allEv); l.Message != "live hook" || l.Function != "hook" {
		t.Fatalf("live line %+v", l)
	}
	if l := nextLog(t, hookEv); l.Message != "live hook" {
		t.Fatalf("function stream got %+v", l)
	}
	select {
	case ev := <-allEv:
		t.Fatalf("unexpected event %+v (a duplicate, or another tenant's line)", ev)
	case <-time.After(200 * time.Millisecond):
	}

	// A client leaving releases its subscription.
	hook.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for le.svc.Subscribers() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers after a client left, want 1", le.svc.Subscribers())
		}
		le.eng.EmitLog(a, false, logRecord("hook", "r", "nudge")) // a write notices the closed connection
		time.Sleep(20 * time.Millisecond)
	}

	le.svc.CloseStreams()
	for ev := range allEv {
		if ev.event == "end" {
			return
		}
	}
	t.Fatal("stream ended without an end event")
}

func TestParseLogsQuery(t *testing.T) {
	cases := []struct {
		function, tail, follow string
		want                   logsQuery
		code                   string
	}{
		{"", "", "", logsQuery{Tail: 100, Follow: true}, ""},
		{"hook", "5", "false", logsQuery{Function: "hook", Tail: 5}, ""},
		{"", "0", "0", logsQuery{Tail: 0}, ""},
		{"", "10000", "1", logsQuery{Tail: 10000, Follow: true}, ""},
		{"", "10001", "", logsQuery{}, "invalid_tail"},
		{"", "-3", "", logsQuery{}, "invalid_tail"},
		{"", "1e3", "", logsQuery{}, "invalid_tail"},
		{"", "", "yes", logsQuery{}, "invalid_follow"},
		{"bad name!", "", "", logsQuery{}, "invalid_function_name"},
	}
	for _, c := range cases {
		got, err := parseLogsQuery(c.function, c.tail, c.follow)
		if c.code != "" {
			if e := errs.As(err); e == nil || e.Code != c.code {
				t.Errorf("%+v: err %v, want %s", c, err, c.code)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%+v: got %+v %v, want %+v", c, got, err, c.want)
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	base := 30 * time.Second
	cases := []struct {
		method, target string
		want           time.Duration
		ok             bool
	}{
		{"GET", "/api/v1/tenants", base, true},
		{"GET", "/api/v1/tenants/acme/logs", 0, false},
		{"GET", "/api/v1/tenants/acme/logs/", 0, false},
		{"GET", "/api/v1/tenants/acme/logs?follow=true&function=x", 0, false},
		{"GET", "/api/v1/tenants/acme/logs?follow=false", base, true},
		{"GET", "/api/v1/tenants/acme/logs?follow=nonsense", 0, false},
		{"POST", "/api/v1/tenants/acme/logs", base, true},
		{"GET", "/api/v1/tenants/acme/functions/logs", base, true},
		{"PUT", "/api/v1/tenants/acme/functions/f?wait=60s", base + time.Minute, true},
		{"PUT", "/api/v1/tenants/acme/functions/f?wait=bad", base, true},
		{"PUT", "/api/v1/tenants/acme/functions/f", base, true},
		{"GET", "/api/v1/tenants/acme/functions/f?wait=60s", base, true},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.target, nil)
		d, ok := RequestTimeout(r, base)
		if d != c.want || ok != c.ok {
			t.Errorf("%s %s: %v %v, want %v %v", c.method, c.target, d, ok, c.want, c.ok)
		}
	}
}

// Invariant: whoami tells a token who it is (the CLI learns its tenant so).
func TestWhoami(t *testing.T) {
	e := newEnv(t, Config{})
	acme := e.mustTenant("acme")
	var w map[string]any
	e.do("GET", "/whoami", testAdminToken, nil).want(t, 200, &w)
	if w["admin"] != true || len(w) != 1 {
		t.Fatalf("admin whoami %v", w)
	}
	e.do("GET", "/whoami", acme, nil).want(t, 200, &w)
	if w["admin"] != false || w["tenant"] != "acme" || w["token_id"] == "" {
		t.Fatalf("tenant whoami %v", w)
	}
	e.do("GET", "/whoami", "wht_nope", nil).wantErr(t, 401, "unauthorized")
}
