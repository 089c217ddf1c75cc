package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/store"
	"github.com/wharfhq/wharf/store/storetest"
	"github.com/wharfhq/wharf/wtstorage"
)

// storageRunner is a runner whose app directory carries the node's real
// storage socket (wtstorage) in front of a real embedded store, for tenant
// acme with the given functions.
func storageRunner(t *testing.T, functions ...string) (*runnerProc, *store.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := storetest.New(t, 1)
	if _, err := st.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, fn := range functions {
		if _, _, err := st.PutFunction(ctx, store.FunctionSpec{Tenant: "acme", Name: fn, Code: "(stored elsewhere)"}); err != nil {
			t.Fatal(err)
		}
	}
	r := startRunner(t)
	srv := wtstorage.New(st, catalog.New(st, logger), logger)
	t.Cleanup(srv.Close)
	if err := srv.Attach("acme", r.appDir); err != nil {
		t.Fatal(err)
	}
	return r, st
}

// Each storage rule of WEBTASK.md, through the runner and the node's socket.
func TestStorage(t *testing.T) {
	r, st := storageRunner(t, "store", "stale", "express", "counter")
	// One function reads, writes and deletes as the query says; it answers
	// what the callbacks gave it.
	r.deploy(t, "store", 1, `module.exports = function (ctx, cb) {
		var q = ctx.query, s = ctx.storage;
		function report(err, data) {
			cb(null, { err: err ? { message: err.message, code: err.code, conflict: err.conflict } : null,
				data: data, undef: data === undefined });
		}
		if (q.op === 'get') return s.get(report);
		if (q.op === 'getopts') return s.get({}, report);
		var value = q.value === undefined ? undefined : JSON.parse(q.value);
		var opts = q.force ? { force: 1 } : undefined;
		if (q.op === 'blind') return opts ? s.set(value, opts, report) : s.set(value, report);
		if (q.op === 'set') return s.get(function (err) {
			if (err) return report(err);
			opts ? s.set(value, opts, report) : s.set(value, report);
		});
		if (q.op === 'big') return s.get(function () { s.set({ x: 'x'.repeat(Number(q.n)) }, report) });
		cb(new Error('unknown op'));
	};`)
	ask := func(query string) map[string]any {
		t.Helper()
		got := r.do(t, call{fn: "store", path: "?" + query})
		got.expect(t, 200, "webtask")
		return got.object(t)
	}
	expect := func(got map[string]any, want string) {
		t.Helper()
		b, _ := json.Marshal(got)
		equalJSON(t, b, want)
	}
	stored := func(fn string) store.Storage {
		t.Helper()
		s, err := st.GetStorage(context.Background(), "acme", fn)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("get is undefined when nothing is stored", func(t *testing.T) {
		expect(ask("op=get"), `{"err":null,"undef":true}`)
		expect(ask("op=getopts"), `{"err":null,"undef":true}`)
	})
	t.Run("set without force before a get is an error and stores nothing", func(t *testing.T) {
		got := ask("op=blind&value=" + url.QueryEscape(`{"a":1}`))
		if e, _ := got["err"].(map[string]any); e == nil || !strings.Contains(e["message"].(string), "must follow a storage.get") {
			t.Fatalf("blind set answered %v", got)
		}
		if s := stored("store"); s.Rev != 0 {
			t.Fatalf("the refused set stored %+v", s)
		}
	})
	t.Run("set after get stores, get returns it in the next request", func(t *testing.T) {
		expect(ask("op=set&value="+url.QueryEscape(`{"a":1,"nested":{"b":[1,2]}}`)), `{"err":null,"undef":true}`)
		expect(ask("op=get"), `{"err":null,"data":{"a":1,"nested":{"b":[1,2]}},"undef":false}`)
	})
	t.Run("force writes without a get", func(t *testing.T) {
		expect(ask("op=blind&force=1&value="+url.QueryEscape(`"forced"`)), `{"err":null,"undef":true}`)
		expect(ask("op=get"), `{"err":null,"data":"forced","undef":false}`)
	})
	t.Run("set(null) and set(undefined) delete", func(t *testing.T) {
		expect(ask("op=set&value=null"), `{"err":null,"undef":true}`)
		expect(ask("op=get"), `{"err":null,"undef":true}`)
		ask("op=set&value=1")
		expect(ask("op=set"), `{"err":null,"undef":true}`) // no value: undefined
		expect(ask("op=get"), `{"err":null,"undef":true}`)
		if s := stored("store"); s.Data != nil {
			t.Fatalf("after delete the store holds %s", s.Data)
		}
	})
	t.Run("over 500 KB is an error and stores nothing", func(t *testing.T) {
		ask("op=set&value=" + url.QueryEscape(`{"keep":true}`))
		before := stored("store")
		got := ask(fmt.Sprintf("op=big&n=%d", 500*1024))
		if e, _ := got["err"].(map[string]any); e == nil || e["code"] != float64(413) {
			t.Fatalf("oversized set answered %v", got)
		}
		if s := stored("store"); s.Rev != before.Rev {
			t.Fatalf("the oversized set changed the storage: %+v", s)
		}
		// Just under the limit is fine ({"x":"..."} is 8 bytes of envelope).
		expect(ask(fmt.Sprintf("op=big&n=%d", 500*1024-8)), `{"err":null,"undef":true}`)
	})

	// A conflict: a request of "stale" reads, then another request of it
	// writes in between (sent by the first), then the first's set fails with
	// 409 and the current document; the 409 counts as a read, so the retry
	// succeeds.
	r.deploy(t, "stale", 1, `var http = require('http');
	module.exports = function (ctx, cb) {
		if (ctx.query.write) return ctx.storage.set({ by: 'writer' }, { force: 1 }, function (err) { cb(err, 'written') });
		ctx.storage.get(function (err, before) {
			if (err) return cb(err);
			http.get({ host: '127.0.0.1', port: Number(ctx.query.port), path: '/api/run/acme/stale?write=1',
				headers: { 'x-wharf-route': 'stale@1' } }, function (res) {
				res.resume();
				res.on('end', function () {
					ctx.storage.set({ by: 'stale' }, function (err1) {
						ctx.storage.set({ by: 'stale', retried: true }, function (err2) {
							cb(null, { before: before, code: err1 && err1.code, conflict: err1 && err1.conflict,
								retry: err2 ? err2.message : 'ok' });
						});
					});
				});
			}).on('error', cb);
		});
	};`)
	t.Run("a changed document conflicts with 409 and err.conflict; the 409 counts as a read", func(t *testing.T) {
		port := strings.TrimPrefix(r.base, "http://127.0.0.1:")
		got := r.do(t, call{fn: "stale", path: "?port=" + port})
		got.expect(t, 200, "webtask")
		equalJSON(t, got.body, `{"code":409,"conflict":{"by":"writer"},"retry":"ok"}`)
		if s := stored("stale"); string(s.Data) != `{"by":"stale","retried":true}` {
			t.Fatalf("stored %s", s.Data)
		}
	})

	r.deploy(t, "express", 1, `module.exports = function (ctx, req, res) {
		var same = req.webtaskContext && req.webtaskContext.storage === ctx.storage;
		ctx.storage.get(function (err, data) {
			ctx.storage.set({ n: (data ? data.n : 0) + 1 }, function (err) {
				res.writeHead(200, { 'content-type': 'application/json' });
				res.end(JSON.stringify({ same: same, err: err ? err.message : null, was: data === undefined ? 'undefined' : data }));
			});
		});
	};`)
	t.Run("the (ctx, req, res) form has the same storage, on req.webtaskContext too", func(t *testing.T) {
		got := r.do(t, call{fn: "express"})
		got.expect(t, 200, "webtask")
		equalJSON(t, got.body, `{"same":true,"err":null,"was":"undefined"}`)
		got = r.do(t, call{fn: "express"})
		equalJSON(t, got.body, `{"same":true,"err":null,"was":{"n":1}}`)
	})

	r.deploy(t, "other", 1, `module.exports = function (ctx, cb) { ctx.storage.get(function (err) { cb(null, { code: err && err.code }) }) };`)
	t.Run("a function the tenant does not have gets no storage", func(t *testing.T) {
		got := r.do(t, call{fn: "other"})
		equalJSON(t, got.body, `{"code":404}`)
	})

	r.deploy(t, "counter", 1, `module.exports = function (ctx, cb) {
		ctx.storage.get(function (err, n) {
			if (err) return cb(err);
			(function attempt(cur) {
				ctx.storage.set((cur || 0) + 1, function (err) {
					if (err && err.code === 409) return attempt(err.conflict);
					cb(err, 'ok');
				});
			})(n);
		});
	};`)
	t.Run("concurrent increments retried on 409 lose nothing", func(t *testing.T) {
		// The 100-writer version runs end to end in integration/storage_test.go.
		n := 25
		if raceEnabled {
			n = 6
		}
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got := r.do(t, call{fn: "counter"})
				got.expect(t, 200, "webtask")
			}()
		}
		wg.Wait()
		if s := stored("counter"); string(s.Data) != fmt.Sprint(n) {
			t.Fatalf("counter = %s after %d increments", s.Data, n)
		}
	})
	r.assertAlive(t)
}
