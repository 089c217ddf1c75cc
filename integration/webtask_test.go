package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/integration/wharftest"
)

// The tests in this file run functions written the way webtask users wrote them (design/WEBTASK.md), through a
// real node, real containers and, for dependencies, modules built from the real npm registry.

const (
	wtCbText = `module.exports = function (cb) { cb(null, 'text') }`
	wtErrTxt = `module.exports = function (cb) { cb('text') }`
	wtStatus = `module.exports = function (ctx, cb) {
  var err = new Error('Not yours: ' + ctx.query.id);
  err.statusCode = 403;
  cb(err);
}`
	wtData = `module.exports = function (ctx, cb) {
  cb(null, { data: ctx.data, body: ctx.body, secrets: ctx.secrets, query: ctx.query });
}`
	wtTopReturn = `'use strict';
var greeting = 'hello from a top-level return';
return function (context, cb) { cb(null, { greeting: greeting, name: context.data.name }) };`
	wtRawStream = `module.exports = function (ctx, req, res) {
  var chunks = [];
  req.on('data', function (c) { chunks.push(c) });
  req.on('end', function () {
    var body = Buffer.concat(chunks).toString();
    res.writeHead(201, { 'Content-Type': 'text/plain' });
    res.end(req.method + ' ' + body.length + ' ' + body.toUpperCase() + ' body_raw:' + ctx.body_raw);
  });
}`
	wtEJS = `var ejs = require('ejs');
function view() {/*
<h1>Hello <%= name %>!</h1>
<ul><% items.forEach(function (i) { %><li><%= i %></li><% }) %></ul>
*/}
var template = view.toString().match(/\/\*([\s\S]*)\*\//)[1];
module.exports = function (ctx, req, res) {
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end(ejs.render(template, { name: ctx.query.name, items: ['a', 'b'] }));
}`
	wtLodash3 = `var _ = require('lodash');
module.exports = function (cb) {
  var other;
  try { require('lodash@4.17.21') } catch (e) { other = e.message }
  cb(null, { v: _.VERSION, pinned: require('lodash@3.10.1').VERSION, same: _ === require('lodash@3.10.1'),
    max: _.max([{ n: 1 }, { n: 3 }], 'n').n, other: other });
}`
	wtLodash4 = `var _ = require('lodash@4.17.21');
module.exports = function (cb) { cb(null, { v: _.VERSION, max: _.maxBy([{ n: 1 }, { n: 3 }], 'n').n }) }`
	wtExpress = `var Express = require('express');
var Webtask = require('webtask-tools');
var bodyParser = require('body-parser');
var app = Express();
app.use(bodyParser.json());
app.use(bodyParser.urlencoded({ extended: false }));
app.get('/', function (req, res) {
  res.json({ route: 'root', secret: req.webtaskContext.secrets.GREETING, url: req.url, original: req.originalUrl });
});
app.get('/items/:id', function (req, res) { res.json({ route: 'item', id: req.params.id, q: req.query.q }) });
app.post('/items', function (req, res) { res.status(201).json({ route: 'create', created: req.body }) });
module.exports = Webtask.fromExpress(app);`
	wtLatest = `'use latest';
import _ from 'lodash';
import { basename } from 'path';

const pick = ({ a, ...rest }) => ({ a, rest });

export default async function (ctx, cb) {
  const n = await Promise.resolve(ctx.query.n ?? '0');
  cb(null, { v: _.VERSION, chunks: _.chunk([1, 2, 3], 2), n, base: basename('/x/y.js'), pick: pick({ a: 1, b: 2 }) });
}`
)

// send is a request with a body of any content type.
func send(t *testing.T, n *wharftest.Node, method, path, contentType, body string) wharftest.Response {
	t.Helper()
	req, err := http.NewRequest(method, n.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return wharftest.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// answer checks status, the x-wt-response-source and the body (JSON compared as values; else as text).
func answer(t *testing.T, r wharftest.Response, status int, source, want string) {
	t.Helper()
	if r.Status != status || r.Header.Get("X-Wt-Response-Source") != source {
		t.Fatalf("status %d source %q, want %d %q; body %s", r.Status, r.Header.Get("X-Wt-Response-Source"), status, source, r.Body)
	}
	var got, exp any
	if json.Unmarshal(r.Body, &got) == nil && json.Unmarshal([]byte(want), &exp) == nil {
		g, _ := json.Marshal(got)
		e, _ := json.Marshal(exp)
		if string(g) != string(e) {
			t.Fatalf("body %s, want %s", g, e)
		}
		return
	}
	if string(r.Body) != want {
		t.Fatalf("body %q, want %q", r.Body, want)
	}
}

// Invariant: webtask code runs unchanged: each form, string results and errors, err.statusCode, context.data from
// query, secrets and JSON or form bodies, a top-level return, a raw request stream, an ejs template read from a
// comment, lodash 3 and 4 side by side with versioned requires, an Express app through webtask-tools, and 'use
// latest' code with ES imports; a syntax error is refused at deploy with its line and column.
func TestWebtaskProgrammingModel(t *testing.T) {
	t.Parallel()
	// Its seven modules build three at a time (the default is one): the test
	// waits on npm, not on a queue.
	n := startNode(t, wharftestArgs("--builders", "3")...)
	tok := createTenant(t, n, "wt")
	put := func(name, code string, extra map[string]any) {
		t.Helper()
		body := map[string]any{"code": code}
		for k, v := range extra {
			body[k] = v
		}
		putFn(t, n, tok, "wt", name, "", body) // the modules build meanwhile; waited for below
	}
	put("text", wtCbText, nil)
	put("err", wtErrTxt, nil)
	put("status", wtStatus, nil)
	put("data", wtData, map[string]any{"secrets": map[string]string{"API_KEY": "s3cret", "name": "from-secret"}})
	put("top", wtTopReturn, nil)
	put("raw", wtRawStream, nil)
	put("ejs", wtEJS, map[string]any{"dependencies": map[string]string{"ejs": "3.1.10"}})
	put("lodash3", wtLodash3, map[string]any{"dependencies": map[string]string{"lodash": "3.10.1"}})
	put("lodash4", wtLodash4, map[string]any{"dependencies": map[string]string{"lodash": "4.17.21"}})
	put("app", wtExpress, map[string]any{"secrets": map[string]string{"GREETING": "hi"}, "dependencies": map[string]string{
		"webtask-tools": "3.4.0", "express": "4.21.2", "body-parser": "1.20.3"}})
	put("latest", wtLatest, map[string]any{"dependencies": map[string]string{"lodash": "4.17.21"}})
	// Seven modules (webtask-tools brings several of its own) can take past the client's timeout for a single
	// PUT ?wait, so the list is polled instead.
	eventually(t, 10*time.Minute, "every function ready", func() bool {
		var list []struct{ Name, Status string }
		if err := do(t, n, "GET", "/api/v1/tenants/wt/functions", tok, nil).JSON(&list); err != nil {
			t.Fatal(err)
		}
		for _, f := range list {
			if f.Status == "failed" {
				t.Fatalf("%s failed to build: %s", f.Name, n.Stderr())
			}
			if f.Status != "ready" {
				time.Sleep(time.Second)
				return false
			}
		}
		return len(list) == 11
	})

	t.Run("forms and results", func(t *testing.T) {
		r := do(t, n, "GET", "/run/wt/text", "", nil)
		answer(t, r, 200, "webtask", `"text"`)
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("content type %q", ct)
		}
		answer(t, do(t, n, "GET", "/run/wt/err", "", nil), 400, "webtask",
			`{"code":400,"error":"Script returned an error.","details":"text"}`)
		r = do(t, n, "GET", "/run/wt/status?id=7", "", nil)
		if r.Status != 403 || !strings.Contains(string(r.Body), `"details":"Error: Not yours: 7"`) ||
			!strings.Contains(string(r.Body), `"error":"Script returned an error."`) {
			t.Fatalf("err.statusCode: %d %s", r.Status, r.Body)
		}
		answer(t, do(t, n, "GET", "/run/wt/top?name=q", "", nil), 200, "webtask",
			`{"greeting":"hello from a top-level return","name":"q"}`)
	})

	t.Run("context.data", func(t *testing.T) {
		// Secrets win over the query, the body only fills gaps; key and webtask_* never reach the code.
		r := send(t, n, "POST", "/run/wt/data?name=from-query&q=1&key=k&webtask_no_cache=1", "application/json",
			`{"API_KEY":"from-body","b":2,"q":"from-body"}`)
		answer(t, r, 200, "webtask", `{"data":{"name":"from-secret","q":"1","API_KEY":"s3cret","b":2},
			"body":{"API_KEY":"from-body","b":2,"q":"from-body"},"secrets":{"API_KEY":"s3cret","name":"from-secret"},
			"query":{"name":"from-query","q":"1"}}`)
		r = send(t, n, "POST", "/run/wt/data", "application/x-www-form-urlencoded", "b=form&c=%C3%A9t%C3%A9")
		answer(t, r, 200, "webtask", `{"data":{"API_KEY":"s3cret","name":"from-secret","b":"form","c":"été"},
			"body":{"b":"form","c":"été"},"secrets":{"API_KEY":"s3cret","name":"from-secret"},"query":{}}`)
	})

	t.Run("raw stream", func(t *testing.T) {
		r := send(t, n, "PUT", "/run/wt/raw", "application/json", `{"not":"parsed"}`)
		answer(t, r, 201, "webtask", `PUT 16 {"NOT":"PARSED"} body_raw:undefined`)
	})

	t.Run("ejs template from a comment", func(t *testing.T) {
		r := do(t, n, "GET", "/run/wt/ejs?name=%3Cwharf%3E", "", nil)
		answer(t, r, 200, "webtask", "\n<h1>Hello &lt;wharf&gt;!</h1>\n<ul><li>a</li><li>b</li></ul>\n")
	})

	t.Run("lodash 3 beside lodash 4", func(t *testing.T) {
		answer(t, do(t, n, "GET", "/run/wt/lodash3", "", nil), 200, "webtask", `{"v":"3.10.1","pinned":"3.10.1","same":true,"max":3,
			"other":"Cannot find module 'lodash@4.17.21': the function declares lodash@3.10.1, not 4.17.21; require('name@version') loads only a version declared in the function's dependencies."}`)
		answer(t, do(t, n, "GET", "/run/wt/lodash4", "", nil), 200, "webtask", `{"v":"4.17.21","max":3}`)
	})

	t.Run("express through webtask-tools", func(t *testing.T) {
		answer(t, do(t, n, "GET", "/run/wt/app", "", nil), 200, "webtask",
			`{"route":"root","secret":"hi","url":"/","original":"/api/run/wt/app"}`)
		answer(t, do(t, n, "GET", "/api/run/wt/app/items/7?q=x", "", nil), 200, "webtask", `{"route":"item","id":"7","q":"x"}`)
		answer(t, do(t, n, "GET", "/run/wt/app/items/8", "", nil), 200, "webtask", `{"route":"item","id":"8"}`)
		answer(t, send(t, n, "POST", "/run/wt/app/items", "application/json", `{"name":"widget"}`), 201, "webtask",
			`{"route":"create","created":{"name":"widget"}}`)
		answer(t, send(t, n, "POST", "/api/run/wt/app/items", "application/x-www-form-urlencoded", "name=form"), 201, "webtask",
			`{"route":"create","created":{"name":"form"}}`)
		r := do(t, n, "GET", "/run/wt/app/nope", "", nil)
		if r.Status != 404 || r.Header.Get("X-Wt-Response-Source") != "webtask" || !strings.Contains(string(r.Body), "Cannot GET") {
			t.Fatalf("unknown route: %d %s", r.Status, r.Body)
		}
	})

	t.Run("use latest", func(t *testing.T) {
		answer(t, do(t, n, "GET", "/run/wt/latest?n=5", "", nil), 200, "webtask",
			`{"v":"4.17.21","chunks":[[1,2],[3]],"n":"5","base":"y.js","pick":{"a":1,"rest":{"b":2}}}`)
		// The API shows the code as it was deployed.
		r := do(t, n, "GET", "/api/v1/tenants/wt/functions/latest", tok, nil)
		var fn struct{ Code string }
		if err := r.JSON(&fn); err != nil || fn.Code != wtLatest {
			t.Fatalf("GET shows %q (%v)", fn.Code, err)
		}
	})

	t.Run("syntax error at deploy", func(t *testing.T) {
		for _, c := range []struct{ code, where string }{
			{"module.exports = function (cb) {\n  cb(null, {a: 1,,})\n}", "line 2, column 18"},
			{"'use latest';\nimport _ from 'lodash';\nexport default (cb) => cb(null, _.VERSION) +;", "line 3, column 45"},
		} {
			r := do(t, n, "PUT", "/api/v1/tenants/wt/functions/text", tok, map[string]any{"code": c.code})
			if r.Status != 400 || !strings.Contains(string(r.Body), `"code":"syntax_error"`) || !strings.Contains(string(r.Body), c.where) {
				t.Fatalf("deploy of a syntax error: %d %s, want 400 naming %s", r.Status, r.Body, c.where)
			}
		}
		// Nothing changed: the function still answers as before.
		answer(t, do(t, n, "GET", "/run/wt/text", "", nil), 200, "webtask", `"text"`)
	})
}

// Invariant: an uncaught asynchronous exception answers 500 with the webtask body to every request of that container
// in flight; the container is replaced and the tenant served again by a fresh one; another tenant called all the
// while never notices.
func TestAsyncCrashAnswersEveryInFlightRequest(t *testing.T) {
	n := startNode(t)
	tok := createTenant(t, n, "crashy")
	deploy(t, n, tok, "crashy", "slow", `module.exports = function (ctx, cb) { setTimeout(function () { cb(null, 'late') }, 3000) }`, nil)
	deploy(t, n, tok, "crashy", "boom", `module.exports = function (cb) { setTimeout(function () { throw new Error('kaboom') }, 200) }`, nil)
	deploy(t, n, tok, "crashy", "who", whoami, nil)
	calm := createTenant(t, n, "calm")
	deploy(t, n, calm, "calm", "who", whoami, nil)
	before := host(t, n, "crashy", "who")
	host(t, n, "calm", "who")

	// The neighbour is called in a loop until the crash is over.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var calmCalls int
	var calmFailures []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := n.Do("GET", "/run/calm/who?i=1", "", nil)
			mu.Lock()
			calmCalls++
			if err != nil || r.Status != 200 || !strings.Contains(string(r.Body), `"q":{"i":"1"}`) {
				calmFailures = append(calmFailures, string(r.Body)+errString(err))
			}
			mu.Unlock()
		}
	}()

	results := make([]wharftest.Response, 4)
	var inflight sync.WaitGroup
	for i := range results {
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			path := "/run/crashy/slow"
			if i == len(results)-1 {
				time.Sleep(300 * time.Millisecond) // the slow ones are in flight by now
				path = "/run/crashy/boom"
			}
			r, err := n.Do("GET", path, "", nil)
			if err != nil {
				r.Body = []byte(err.Error())
			}
			results[i] = r
		}()
	}
	inflight.Wait()
	for i, r := range results {
		answerContains(t, i, r)
	}

	eventually(t, 15*time.Second, "crashy served by a fresh container", func() bool {
		r, err := n.Do("GET", "/run/crashy/who", "", nil)
		if err != nil || r.Status != 200 {
			return false
		}
		var out struct{ Host string }
		return r.JSON(&out) == nil && out.Host != "" && out.Host != before
	})
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if calmCalls < 5 || len(calmFailures) > 0 {
		t.Fatalf("neighbour: %d calls, failures %q", calmCalls, calmFailures)
	}
}

func answerContains(t *testing.T, i int, r wharftest.Response) {
	t.Helper()
	var body struct {
		Code           int
		Error, Details string
	}
	if r.Status != 500 || r.Header.Get("X-Wt-Response-Source") != "webtask" || json.Unmarshal(r.Body, &body) != nil ||
		body.Code != 500 || body.Error != "Script generated an unhandled asynchronous exception." || body.Details != "Error: kaboom" {
		t.Fatalf("in-flight request %d: %d %q %s", i, r.Status, r.Header.Get("X-Wt-Response-Source"), r.Body)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}
