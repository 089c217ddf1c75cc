package mgmt

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file holds the OpenAPI document to the implementation: a small
// validator of the JSON Schema subset the document uses, and conform, which
// every request of this package's HTTP tests goes through.

type apiDoc struct {
	raw   map[string]any
	paths []docPath
}

type docPath struct {
	template string
	re       *regexp.Regexp
	ops      map[string]map[string]any // lower-case method -> operation
}

var (
	docOnce sync.Once
	docVal  *apiDoc
	docErr  error
)

// loadDoc parses the embedded document once.
func loadDoc(t testing.TB) *apiDoc {
	t.Helper()
	docOnce.Do(func() {
		var raw map[string]any
		if docErr = json.Unmarshal(OpenAPI, &raw); docErr != nil {
			return
		}
		d := &apiDoc{raw: raw}
		paths, _ := raw["paths"].(map[string]any)
		for tmpl, item := range paths {
			dp := docPath{template: tmpl, ops: map[string]map[string]any{},
				re: regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + "$")}
			for k, v := range item.(map[string]any) {
				if op, ok := v.(map[string]any); ok && k != "parameters" {
					dp.ops[k] = op
				}
			}
			d.paths = append(d.paths, dp)
		}
		docVal = d
	})
	if docErr != nil {
		t.Fatalf("openapi.json: %v", docErr)
	}
	return docVal
}

// operation finds the documented operation of a concrete request path.
func (d *apiDoc) operation(method, path string) (string, map[string]any) {
	path, _, _ = strings.Cut(path, "?")
	for _, p := range d.paths {
		if p.re.MatchString(path) {
			return p.template, p.ops[strings.ToLower(method)]
		}
	}
	return "", nil
}

// resolve follows a $ref inside the document.
func (d *apiDoc) resolve(node map[string]any) map[string]any {
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		var cur any = d.raw
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, _ := cur.(map[string]any)
			cur = m[part]
		}
		next, ok := cur.(map[string]any)
		if !ok {
			panic("unresolvable $ref " + ref)
		}
		node = next
	}
}

// conform checks that a response is one the document promises for the
// request: a documented status, and a JSON body matching its schema.
// Requests of no documented operation (unknown routes, 405s) are skipped.
func conform(t testing.TB, method, path string, r resp) {
	t.Helper()
	d := loadDoc(t)
	tmpl, op := d.operation(method, path)
	if op == nil {
		return
	}
	responses := op["responses"].(map[string]any)
	spec, ok := responses[strconv.Itoa(r.Code)].(map[string]any)
	if !ok {
		t.Errorf("openapi.json: %s %s (%s) answered %d, which it does not document; body %s", method, path, tmpl, r.Code, r.Body)
		return
	}
	spec = d.resolve(spec)
	content, _ := spec["content"].(map[string]any)
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if len(content) == 0 {
		if len(r.Body) > 0 {
			t.Errorf("openapi.json: %s %s answered %d with a body it does not document: %s", method, path, r.Code, r.Body)
		}
		return
	}
	media, ok := content[ct].(map[string]any)
	if !ok {
		t.Errorf("openapi.json: %s %s answered %d as %q, documented %v", method, path, r.Code, ct, slices.Sorted(mapKeys(content)))
		return
	}
	if ct != "application/json" {
		return
	}
	var body any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Errorf("%s %s: body is not JSON: %v", method, path, err)
		return
	}
	if err := d.validate(media["schema"].(map[string]any), body, "body"); err != nil {
		t.Errorf("openapi.json: %s %s answered %d with a body its schema refuses: %v\nbody %s", method, path, r.Code, err, r.Body)
	}
	if h, ok := spec["headers"].(map[string]any); ok {
		for name := range h {
			if r.Header.Get(name) == "" {
				t.Errorf("openapi.json: %s %s answered %d without its documented header %s", method, path, r.Code, name)
			}
		}
	}
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// validate checks v against a schema of the subset the document uses.
func (d *apiDoc) validate(schema map[string]any, v any, at string) error {
	schema = d.resolve(schema)
	switch schema["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an object", at, v)
		}
		props, _ := schema["properties"].(map[string]any)
		for _, r := range anySlice(schema["required"]) {
			if _, ok := m[r.(string)]; !ok {
				return fmt.Errorf("%s: required field %q missing", at, r)
			}
		}
		for k, val := range m {
			if p, ok := props[k].(map[string]any); ok {
				if err := d.validate(p, val, at+"."+k); err != nil {
					return err
				}
				continue
			}
			switch extra := schema["additionalProperties"].(type) {
			case bool:
				if !extra {
					return fmt.Errorf("%s: field %q not documented", at, k)
				}
			case map[string]any:
				if err := d.validate(extra, val, at+"."+k); err != nil {
					return err
				}
			}
		}
	case "array":
		s, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an array", at, v)
		}
		items, _ := schema["items"].(map[string]any)
		for i, item := range s {
			if items != nil {
				if err := d.validate(items, item, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T, want a string", at, v)
		}
		if enum := anySlice(schema["enum"]); enum != nil && !slices.Contains(enum, any(s)) {
			return fmt.Errorf("%s: %q not in %v", at, s, enum)
		}
		if p, ok := schema["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(s) {
			return fmt.Errorf("%s: %q does not match %s", at, s, p)
		}
		if schema["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				return fmt.Errorf("%s: %q is not a date-time", at, s)
			}
		}
	case "integer", "number":
		n, ok := v.(float64)
		if !ok {
			return fmt.Errorf("%s: %T, want a number", at, v)
		}
		if schema["type"] == "integer" && n != math.Trunc(n) {
			return fmt.Errorf("%s: %v is not an integer", at, n)
		}
		if lo, ok := schema["minimum"].(float64); ok && n < lo {
			return fmt.Errorf("%s: %v below the minimum %v", at, n, lo)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: %T, want a boolean", at, v)
		}
	case nil:
	default:
		return fmt.Errorf("%s: schema type %v not supported by this checker", at, schema["type"])
	}
	return nil
}

func anySlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// TestValidatorRejects makes sure the checker can fail: each body breaks the
// documented schema in one way.
func TestValidatorRejects(t *testing.T) {
	d := loadDoc(t)
	fs := map[string]any{"$ref": "#/components/schemas/FunctionStatus"}
	good := `{"name":"f","version":1,"status":"ready","modules":[],"updated_at":"2026-01-01T00:00:00Z"}`
	var v any
	_ = json.Unmarshal([]byte(good), &v)
	if err := d.validate(fs, v, "body"); err != nil {
		t.Fatalf("good body refused: %v", err)
	}
	bad := []string{
		`{"name":"f","version":1,"status":"ready","modules":[]}`,
		`{"name":"f","version":1,"status":"ready","modules":[],"updated_at":"2026-01-01T00:00:00Z","secret":"x"}`,
		`{"name":"f","version":1.5,"status":"ready","modules":[],"updated_at":"2026-01-01T00:00:00Z"}`,
		`{"name":"f","version":0,"status":"ready","modules":[],"updated_at":"2026-01-01T00:00:00Z"}`,
		`{"name":"f","version":1,"status":"done","modules":[],"updated_at":"2026-01-01T00:00:00Z"}`,
		`{"name":"f","version":1,"status":"ready","modules":{},"updated_at":"2026-01-01T00:00:00Z"}`,
		`{"name":"f","version":1,"status":"ready","modules":[{"name":"ms"}],"updated_at":"2026-01-01T00:00:00Z"}`,
		`{"name":"f","version":1,"status":"ready","modules":[],"updated_at":"yesterday"}`,
		`[]`,
	}
	for _, b := range bad {
		_ = json.Unmarshal([]byte(b), &v)
		if err := d.validate(fs, v, "body"); err == nil {
			t.Errorf("accepted %s", b)
		}
	}
	// And conform itself: an undocumented status is reported.
	ft := &fakeT{}
	conform(ft, "GET", "/api/v1/tenants", resp{Code: http.StatusTeapot, Header: http.Header{}, Body: []byte(`{}`)})
	if !ft.failed {
		t.Fatal("conform accepted an undocumented status")
	}
}

// fakeT records failures of a check that is expected to fail.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }
