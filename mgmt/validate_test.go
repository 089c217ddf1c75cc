package mgmt

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/errs"
)

// wantCode checks that err carries status and code, or is nil when code is "".
func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	e := errs.As(err)
	if e == nil {
		t.Fatalf("error %v, want %d %s", err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("got %d %s (%s), want %d %s", e.Status, e.Code, e.Message, status, code)
	}
	if !strings.HasSuffix(e.Message, ".") {
		t.Errorf("message %q does not end a sentence", e.Message)
	}
}

func TestValidateTenantName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"acme", true},
		{"a", true},
		{"0", true},
		{"acme-corp-2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-acme", false},
		{"Acme", false},
		{"ac_me", false},
		{"ac.me", false},
		{"ac me", false},
		{"acme\n", false},
		{"é", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := ""
			if !tc.ok {
				code = codeInvalidTenantName
			}
			wantCode(t, validateTenantName(tc.name), http.StatusBadRequest, code)
		})
	}
}

func TestValidateFunctionName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"hook", true},
		{"Hook_2-b", true},
		{"9", true},
		{strings.Repeat("F", 64), true},
		{strings.Repeat("F", 65), false},
		{"", false},
		{"_hook", false},
		{"-hook", false},
		{"ho.ok", false},
		{"ho/ok", false},
		{"ho ok", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := ""
			if !tc.ok {
				code = codeInvalidFunctionName
			}
			wantCode(t, validateFunctionName(tc.name), http.StatusBadRequest, code)
		})
	}
}

func TestValidNPMName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"ms", true},
		{"lodash.merge", true},
		{"left-pad", true},
		{"a_b", true},
		{"@types/node", true},
		{"@scope-x/pkg.name_2", true},
		{"3d-view", true},
		{strings.Repeat("a", 214), true},
		{strings.Repeat("a", 215), false},
		{"@s/" + strings.Repeat("a", 211), true},
		{"@s/" + strings.Repeat("a", 212), false},
		{"", false},
		{"Lodash", false},
		{".hidden", false},
		{"_private", false},
		{"-flag", false},
		{"a b", false},
		{" ms", false},
		{"ms/x", false},
		{"@scope", false},
		{"@scope/", false},
		{"@/pkg", false},
		{"@Scope/pkg", false},
		{"@scope/.pkg", false},
		{"@scope/pkg/x", false},
		{"@scope/..", false},
		{"..", false},
		{"node_modules", false},
		{"favicon.ico", false},
		{"crazy!", false},
		{"tilde~", false},
		{"a(b)", false},
		{"caf%C3%A9", false},
		{"café", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := validNPMName(tc.name); got != tc.ok {
				t.Fatalf("validNPMName(%q) = %v, want %v", tc.name, got, tc.ok)
			}
		})
	}
}

func TestValidExactVersion(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"1.2.3", true},
		{"0.0.0", true},
		{"10.20.30", true},
		{"1.0.0-alpha", true},
		{"1.0.0-alpha.1", true},
		{"1.0.0-0.3.7", true},
		{"1.0.0-x-y-z.--", true},
		{"1.0.0+20130313144700", true},
		{"1.0.0-beta+exp.sha.5114f85", true},
		{"9007199254740991.0.0", true},
		{"9007199254740992.0.0", false},
		{"", false},
		{"1", false},
		{"1.2", false},
		{"1.2.3.4", false},
		{"01.2.3", false},
		{"1.02.3", false},
		{"1.0.0-01", false},
		{"v1.2.3", false},
		{"=1.2.3", false},
		{"^1.0.0", false},
		{"~1.2.3", false},
		{">=1.0.0", false},
		{"<2", false},
		{"1.x", false},
		{"1.2.x", false},
		{"*", false},
		{"1.2.3 - 2.0.0", false},
		{"1.2.3 || 2.0.0", false},
		{"latest", false},
		{"next", false},
		{"git+https://github.com/a/b.git", false},
		{"git://github.com/a/b.git#v1.0.0", false},
		{"github:a/b", false},
		{"a/b", false},
		{"https://example.com/x-1.0.0.tgz", false},
		{"file:../x", false},
		{"link:../x", false},
		{"npm:ms@2.1.3", false},
		{" 1.2.3", false},
		{"1.2.3 ", false},
		{"1.2.3-", false},
		{"1.2.3+", false},
		{"1.2.3-a..b", false},
		{"1.2.3\n", false},
		{"1.2.3-" + strings.Repeat("a", 300), false},
	} {
		t.Run(tc.v, func(t *testing.T) {
			if got := validExactVersion(tc.v); got != tc.ok {
				t.Fatalf("validExactVersion(%q) = %v, want %v", tc.v, got, tc.ok)
			}
		})
	}
}

func TestValidateDependencies(t *testing.T) {
	many := map[string]string{}
	for i := range MaxDependencies + 1 {
		many[fmt.Sprintf("dep%d", i)] = "1.0.0"
	}
	fifty := map[string]string{}
	for i := range MaxDependencies {
		fifty[fmt.Sprintf("dep%d", i)] = "1.0.0"
	}
	for _, tc := range []struct {
		name    string
		deps    map[string]string
		code    string
		mention string // the message must name the offending entry
	}{
		{"nil", nil, "", ""},
		{"exact", map[string]string{"ms": "2.1.3", "@types/node": "20.1.0"}, "", ""},
		{"fifty", fifty, "", ""},
		{"range", map[string]string{"ms": "^1.0.0"}, codeInvalidDependency, `"ms"`},
		{"tag", map[string]string{"ms": "latest"}, codeInvalidDependency, `"latest"`},
		{"git", map[string]string{"x": "git+https://github.com/a/b.git"}, codeInvalidDependency, `"x"`},
		{"file", map[string]string{"x": "file:../x"}, codeInvalidDependency, `"file:../x"`},
		{"bad name", map[string]string{"Bad": "1.0.0"}, codeInvalidDependency, `"Bad"`},
		{"first bad in name order", map[string]string{"b": "^1", "a": "latest"}, codeInvalidDependency, `"a"`},
		{"too many", many, codeTooManyDependencies, "51"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateDependencies(tc.deps)
			wantCode(t, err, http.StatusBadRequest, tc.code)
			if err != nil && !strings.Contains(errs.As(err).Message, tc.mention) {
				t.Errorf("message %q does not mention %s", errs.As(err).Message, tc.mention)
			}
		})
	}
}

func TestValidateSecrets(t *testing.T) {
	hundred := map[string]string{}
	for i := range MaxSecrets {
		hundred[fmt.Sprintf("S%d", i)] = "v"
	}
	tooMany := map[string]string{"EXTRA": "v"}
	for k, v := range hundred {
		tooMany[k] = v
	}
	for _, tc := range []struct {
		name    string
		secrets map[string]string
		code    string
	}{
		{"nil", nil, ""},
		{"ok", map[string]string{"API_KEY": "v", "_x": "", "a1": "y"}, ""},
		{"longest name", map[string]string{"A" + strings.Repeat("b", 127): "v"}, ""},
		{"largest value", map[string]string{"K": strings.Repeat("v", MaxSecretValueBytes)}, ""},
		{"hundred", hundred, ""},
		{"name too long", map[string]string{"A" + strings.Repeat("b", 128): "v"}, codeInvalidSecret},
		{"name starts with digit", map[string]string{"1K": "v"}, codeInvalidSecret},
		{"name with dash", map[string]string{"API-KEY": "v"}, codeInvalidSecret},
		{"empty name", map[string]string{"": "v"}, codeInvalidSecret},
		{"value too large", map[string]string{"K": strings.Repeat("v", MaxSecretValueBytes+1)}, codeInvalidSecret},
		{"too many", tooMany, codeTooManySecrets},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateSecrets(tc.secrets)
			wantCode(t, err, http.StatusBadRequest, tc.code)
			if err != nil && strings.Contains(errs.As(err).Message, "vvvv") {
				t.Errorf("message %q shows a secret value", errs.As(err).Message)
			}
		})
	}
}

func TestValidateCode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   string
		status int
		ecode  string
	}{
		{"ok", "module.exports = cb => cb()", 0, ""},
		{"exactly max", strings.Repeat("x", 100), 0, ""},
		{"empty", "", http.StatusBadRequest, codeMissingCode},
		{"blank", " \n\t", http.StatusBadRequest, codeMissingCode},
		{"too large", strings.Repeat("x", 101), http.StatusRequestEntityTooLarge, codeCodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, validateCode(tc.code, 100), tc.status, tc.ecode)
		})
	}
}

func TestResolveTimeout(t *testing.T) {
	cfg := Config{}.withDefaults()
	for _, tc := range []struct {
		in, want int
		ok       bool
	}{
		{0, 30000, true},
		{1, 1, true},
		{5000, 5000, true},
		{300000, 300000, true},
		{300001, 0, false},
		{-1, 0, false},
	} {
		t.Run(fmt.Sprint(tc.in), func(t *testing.T) {
			got, err := resolveTimeout(tc.in, cfg)
			if !tc.ok {
				wantCode(t, err, http.StatusBadRequest, codeInvalidTimeout)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resolveTimeout(%d) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	want := Config{MaxCodeBytes: 1 << 20, DefaultTimeoutMS: 30000, MaxTimeoutMS: 300000}
	if got != want {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
	custom := Config{MaxCodeBytes: 10, DefaultTimeoutMS: 500, MaxTimeoutMS: 1000}
	if got := custom.withDefaults(); got != custom {
		t.Fatalf("custom %+v changed to %+v", custom, got)
	}
}

func TestParseWait(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"60s", time.Minute, true},
		{"1m30s", 90 * time.Second, true},
		{"0s", 0, true},
		{"60", 0, false},
		{"abc", 0, false},
		{"-1s", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseWait(tc.in)
			if !tc.ok {
				wantCode(t, err, http.StatusBadRequest, codeInvalidWait)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseWait(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

func TestValidateVersion(t *testing.T) {
	one, zero, neg := 1, 0, -3
	if v, err := validateVersion(&one); err != nil || v != 1 {
		t.Fatalf("validateVersion(1) = %d, %v", v, err)
	}
	for _, v := range []*int{nil, &zero, &neg} {
		_, err := validateVersion(v)
		wantCode(t, err, http.StatusBadRequest, codeInvalidVersion)
	}
}

func TestValidateDescription(t *testing.T) {
	wantCode(t, validateDescription(""), 0, "")
	wantCode(t, validateDescription("ci déploiement"), 0, "")
	wantCode(t, validateDescription(strings.Repeat("é", MaxDescriptionRunes)), 0, "")
	wantCode(t, validateDescription(strings.Repeat("é", MaxDescriptionRunes+1)), http.StatusBadRequest, codeInvalidDescription)
	wantCode(t, validateDescription("a\nb"), http.StatusBadRequest, codeInvalidDescription)
}

func TestUnmarshalStrict(t *testing.T) {
	type body struct {
		Name    string            `json:"name"`
		Count   int               `json:"count"`
		Labels  map[string]string `json:"labels"`
		Ignored string            `json:"-"`
	}
	for _, tc := range []struct {
		name     string
		in       string
		required bool
		code     string
		want     body
	}{
		{"ok", `{"name":"a","count":2,"labels":{"K":"v"}}`, true, "", body{Name: "a", Count: 2, Labels: map[string]string{"K": "v"}}},
		{"white space around", " \n{\"name\":\"a\"}\n ", true, "", body{Name: "a"}},
		{"empty object", `{}`, true, "", body{}},
		{"nulls", `{"name":null,"labels":null}`, true, "", body{}},
		{"empty optional", ``, false, "", body{}},
		{"empty required", ``, true, codeEmptyBody, body{}},
		{"blank required", "  \n", true, codeEmptyBody, body{}},
		{"unknown field", `{"name":"a","nope":1}`, true, codeUnknownField, body{}},
		{"case differs", `{"Name":"a"}`, true, codeUnknownField, body{}},
		{"dash field", `{"Ignored":"a"}`, true, codeUnknownField, body{}},
		{"duplicate", `{"name":"a","name":"b"}`, true, codeDuplicateField, body{}},
		{"two values", `{"name":"a"}{"name":"b"}`, true, codeBadJSON, body{}},
		{"trailing garbage", `{"name":"a"} x`, true, codeBadJSON, body{}},
		{"array", `[{"name":"a"}]`, true, codeBadJSON, body{}},
		{"null", `null`, true, codeBadJSON, body{}},
		{"string", `"a"`, true, codeBadJSON, body{}},
		{"truncated", `{"name":`, true, codeBadJSON, body{}},
		{"syntax", `{"name" "a"}`, true, codeBadJSON, body{}},
		{"trailing comma", `{"name":"a",}`, true, codeBadJSON, body{}},
		{"invalid utf8", "{\"name\":\"\xff\"}", true, codeBadJSON, body{}},
		{"wrong type", `{"count":"2"}`, true, codeBadFieldType, body{}},
		{"fraction", `{"count":1.5}`, true, codeBadFieldType, body{}},
		{"overflow", `{"count":1e100}`, true, codeBadFieldType, body{}},
		{"map value type", `{"labels":{"K":1}}`, true, codeBadFieldType, body{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got body
			err := unmarshalStrict([]byte(tc.in), &got, tc.required)
			wantCode(t, err, http.StatusBadRequest, tc.code)
			if tc.code == "" && fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("decoded %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestValidateBodyLimit(t *testing.T) {
	cases := []struct {
		v, node int64
		ok      bool
	}{
		{0, 1 << 20, true},       // the node's limit
		{1, 1 << 20, true},       // smallest
		{1 << 20, 1 << 20, true}, // exactly the node's
		{1<<20 + 1, 1 << 20, false},
		{-1, 1 << 20, false},
		{5, 0, true}, // no node bound configured
		{-5, 0, false},
	}
	for _, c := range cases {
		err := validateBodyLimit("max_request_bytes", c.v, c.node)
		if (err == nil) != c.ok {
			t.Errorf("validateBodyLimit(%d, %d) = %v, want ok=%v", c.v, c.node, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "max_request_bytes") {
			t.Errorf("error does not name the field: %v", err)
		}
	}
}
