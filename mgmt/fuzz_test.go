package mgmt

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wharfhq/wharf/errs"
)

// The fuzz targets feed arbitrary bytes to the request decoding and
// validation. Whatever the input, they never panic, a refusal is a 4xx
// *errs.Error with one sentence, and what is accepted satisfies every rule
// the API promises. Seeds are in testdata/fuzz/<target>/.

func wantClientError(t *testing.T, err error) {
	t.Helper()
	e := errs.As(err)
	if e == nil || e.Status < 400 || e.Status >= 500 || e.Code == "" || !strings.HasSuffix(e.Message, ".") {
		t.Fatalf("refusal %v is not a 4xx error with a code and a sentence", err)
	}
}

func FuzzPutFunctionBody(f *testing.F) {
	a := New(nil, nil, Config{MaxCodeBytes: 1 << 10}, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req putFunctionRequest
		if err := unmarshalStrict(body, &req, true); err != nil {
			wantClientError(t, err)
			return
		}
		spec, err := a.functionSpec("acme", "hook", req)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if strings.TrimSpace(spec.Code) == "" || len(spec.Code) > 1<<10 {
			t.Fatalf("accepted code of %d bytes", len(spec.Code))
		}
		if len(spec.Dependencies) > MaxDependencies {
			t.Fatalf("%d dependencies accepted", len(spec.Dependencies))
		}
		for name, version := range spec.Dependencies {
			if !validNPMName(name) || !validExactVersion(version) {
				t.Fatalf("dependency %q@%q accepted", name, version)
			}
		}
		if len(spec.Secrets) > MaxSecrets {
			t.Fatalf("%d secrets accepted", len(spec.Secrets))
		}
		for k, v := range spec.Secrets {
			if !secretNameRE.MatchString(k) || len(v) > MaxSecretValueBytes {
				t.Fatalf("secret %q accepted", k)
			}
		}
		if spec.TimeoutMS < 1 || spec.TimeoutMS > DefaultMaxTimeoutMS {
			t.Fatalf("timeout %d accepted", spec.TimeoutMS)
		}
	})
}

func FuzzValidateDependencies(f *testing.F) {
	f.Fuzz(func(t *testing.T, name, version string) {
		err := validateDependencies(map[string]string{name: version})
		if err != nil {
			wantClientError(t, err)
			return
		}
		if !validNPMName(name) || !validExactVersion(version) || strings.ContainsAny(version, "^~<>=*| ") {
			t.Fatalf("accepted %q@%q", name, version)
		}
	})
}

func FuzzRollbackAndTenantBodies(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var rb rollbackRequest
		if err := unmarshalStrict(body, &rb, true); err != nil {
			wantClientError(t, err)
		} else if v, err := validateVersion(rb.Version); err == nil && v < 1 {
			t.Fatalf("version %d accepted", v)
		} else if err != nil {
			wantClientError(t, err)
		}
		var ct createTenantRequest
		if err := unmarshalStrict(body, &ct, true); err != nil {
			wantClientError(t, err)
		} else if err := validateTenantName(ct.Name); err == nil && !tenantNameRE.MatchString(ct.Name) {
			t.Fatalf("tenant name %q accepted", ct.Name)
		} else if err != nil {
			wantClientError(t, err)
		}
		var tok createTokenRequest
		if err := unmarshalStrict(body, &tok, false); err != nil {
			wantClientError(t, err)
		} else if err := validateDescription(tok.Description); err == nil && utf8.RuneCountInString(tok.Description) > MaxDescriptionRunes {
			t.Fatalf("description of %d characters accepted", utf8.RuneCountInString(tok.Description))
		}
	})
}

func FuzzBearerAndLogsQuery(f *testing.F) {
	f.Fuzz(func(t *testing.T, header, function, tail, follow string) {
		if tok, err := bearer(header); err == nil {
			if tok == "" || len(tok) > maxTokenLen || strings.ContainsAny(tok, " \t") {
				t.Fatalf("token %q accepted from %q", tok, header)
			}
		} else if errs.As(err).Status != 401 {
			t.Fatalf("bearer refusal %v is not a 401", err)
		}
		q, err := parseLogsQuery(function, tail, follow)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if q.Tail < 0 || q.Tail > MaxLogTail || (q.Function != "" && !functionNameRE.MatchString(q.Function)) {
			t.Fatalf("query %+v accepted", q)
		}
	})
}
