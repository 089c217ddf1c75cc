package mgmt

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// OpenAPI is the OpenAPI 3 document of this API. Tests hold it to the
// implementation: every route registered under /api/v1 is in it and the
// other way round, and every answer of the HTTP tests has a status and a
// body it documents.
//
//go:embed openapi.json
var OpenAPI []byte

// GET /openapi.json: no authentication, so clients can discover the API.
func openAPI(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "public, max-age=300")
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSONCharsetUTF8, OpenAPI)
}

// DocumentedRoutes lists the operations of the document as echo routes,
// "METHOD /api/v1/path/:param", sorted.
func DocumentedRoutes() ([]string, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	var out []string
	for path, item := range doc.Paths {
		echoPath := pathParamRE.ReplaceAllString(path, ":$1")
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				out = append(out, strings.ToUpper(method)+" "+echoPath)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// pathParamRE matches an OpenAPI path parameter, {name}.
var pathParamRE = regexp.MustCompile(`\{([^}/]+)\}`)

// ModuleRoute is served by the module builder (another package); the
// document carries it because API.md does. Until that package registers it
// on the node, it is the one documented route allowed to be missing.
const ModuleRoute = "GET /api/v1/modules/:module"

// RouteProblems compares the echo routes under /api/v1 with the document,
// both ways. Parameter names are not compared (":tenant" and ":t" match).
func RouteProblems(routes []*echo.Route) []string {
	documented, err := DocumentedRoutes()
	if err != nil {
		return []string{err.Error()}
	}
	anyParam := regexp.MustCompile(`:[^/]+`)
	norm := func(r string) string { return anyParam.ReplaceAllString(r, ":") }
	doc := map[string]bool{}
	for _, r := range documented {
		doc[norm(r)] = true
	}
	registered := map[string]bool{}
	var problems []string
	for _, r := range routes {
		if !strings.HasPrefix(r.Path, "/api/v1/") || r.Method == echo.RouteNotFound {
			continue
		}
		key := norm(r.Method + " " + r.Path)
		registered[key] = true
		// The module builder may register its route in another shape (e.g.
		// "/modules/*"): the documented module route covers it.
		if !doc[key] && !strings.HasPrefix(r.Path, "/api/v1/modules/") {
			problems = append(problems, "registered but not in openapi.json: "+r.Method+" "+r.Path)
		}
	}
	for _, r := range documented {
		if registered[norm(r)] || r == ModuleRoute {
			continue
		}
		problems = append(problems, "in openapi.json but not registered: "+r)
	}
	slices.Sort(problems)
	return problems
}
