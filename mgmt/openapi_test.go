package mgmt

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// Invariant: the document and the routes of the management API agree, both ways.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := echo.New()
	New(nil, nil, Config{}, nil).Register(e.Group("/api/v1"))
	if p := RouteProblems(e.Routes()); len(p) > 0 {
		t.Fatalf("routes and openapi.json differ:\n%s", strings.Join(p, "\n"))
	}
	// The check can fail both ways.
	e.GET("/api/v1/undocumented", func(echo.Context) error { return nil })
	if p := RouteProblems(e.Routes()); len(p) != 1 || !strings.Contains(p[0], "/api/v1/undocumented") {
		t.Fatalf("an undocumented route was not reported: %q", p)
	}
	bare := echo.New()
	bare.GET("/api/v1/tenants", func(echo.Context) error { return nil })
	if p := RouteProblems(bare.Routes()); len(p) < 10 {
		t.Fatalf("unregistered operations not reported: %q", p)
	}
}

// Invariant: the document is well formed: OpenAPI 3.0, unique operation ids,
// every $ref resolves, every path parameter declared, every authenticated
// operation documents 401 and every error answer is the Error shape.
func TestOpenAPIDocument(t *testing.T) {
	d := loadDoc(t)
	if v, _ := d.raw["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
		t.Fatalf("openapi version %q", v)
	}
	var walk func(node any)
	walk = func(node any) {
		switch n := node.(type) {
		case map[string]any:
			if _, ok := n["$ref"]; ok {
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Errorf("%v", r)
						}
					}()
					d.resolve(n)
				}()
			}
			for _, v := range n {
				walk(v)
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(d.raw)
	ids := map[string]bool{}
	paramRE := regexp.MustCompile(`\{([^}]+)\}`)
	for _, p := range d.paths {
		item := d.raw["paths"].(map[string]any)[p.template].(map[string]any)
		declared := map[string]bool{}
		for _, prm := range anySlice(item["parameters"]) {
			declared[prm.(map[string]any)["name"].(string)] = true
		}
		for method, op := range p.ops {
			id, _ := op["operationId"].(string)
			if id == "" || ids[id] {
				t.Errorf("%s %s: operationId %q missing or repeated", method, p.template, id)
			}
			ids[id] = true
			for _, prm := range anySlice(op["parameters"]) {
				declared[prm.(map[string]any)["name"].(string)] = true
			}
			for _, m := range paramRE.FindAllStringSubmatch(p.template, -1) {
				if !declared[m[1]] {
					t.Errorf("%s %s: path parameter %s not declared", method, p.template, m[1])
				}
			}
			responses, _ := op["responses"].(map[string]any)
			if len(responses) == 0 {
				t.Errorf("%s %s: no responses", method, p.template)
			}
			sec, hasSec := op["security"]
			public := hasSec && len(anySlice(sec)) == 0
			if _, ok := responses["401"]; !public && !ok {
				t.Errorf("%s %s: authenticated but no 401 documented", method, p.template)
			}
			for status, r := range responses {
				if status[0] < '4' {
					continue
				}
				schema := d.resolve(r.(map[string]any))["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
				if schema["$ref"] != "#/components/schemas/Error" {
					t.Errorf("%s %s: %s is not the Error shape", method, p.template, status)
				}
			}
		}
	}
}

// Invariant: the document is served without a token, as embedded; every
// other operation refuses a request without a token with a documented 401.
func TestOpenAPIServedAndAuth(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.do("GET", "/openapi.json", "", nil)
	r.want(t, http.StatusOK, nil)
	if !bytes.Equal(r.Body, OpenAPI) || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("openapi.json served %q as %q", r.Body[:min(40, len(r.Body))], r.Header.Get("Content-Type"))
	}
	routes, err := DocumentedRoutes()
	if err != nil {
		t.Fatal(err)
	}
	sample := strings.NewReplacer(":tenant", "acme", ":name", "hook", ":id", "abc", ":module", "ms@2.1.3")
	for _, route := range routes {
		method, path, _ := strings.Cut(route, " ")
		if path == "/api/v1/openapi.json" || route == ModuleRoute {
			continue
		}
		t.Run(route, func(t *testing.T) {
			r := e.do(method, strings.TrimPrefix(sample.Replace(path), "/api/v1"), "", nil)
			r.wantErr(t, http.StatusUnauthorized, "unauthorized")
			if r.Header.Get(echo.HeaderWWWAuthenticate) != "Bearer" {
				t.Error("401 without WWW-Authenticate: Bearer")
			}
		})
	}
}
