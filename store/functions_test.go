package store

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestPutFunction(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	tn := mustTenant(t, s, "acme")

	spec := FunctionSpec{
		Tenant:       "acme",
		Name:         "hook",
		Code:         "module.exports = cb => cb(null, 1)",
		Dependencies: map[string]string{"ms": "2.1.3", "lodash": "4.17.21"},
		Secrets:      map[string]string{"ZED": "z", "API_KEY": "k", "M": "m"},
		TimeoutMS:    30000,
	}
	fv, created, err := s.PutFunction(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !created || fv.Version != 1 {
		t.Fatalf("first put: created=%v version=%d", created, fv.Version)
	}
	if fv.Tenant != "acme" || fv.Name != "hook" || fv.Code != spec.Code || fv.TimeoutMS != 30000 ||
		!maps.Equal(fv.Dependencies, spec.Dependencies) || !maps.Equal(fv.Secrets, spec.Secrets) ||
		fv.Deleted || fv.CreatedAt.IsZero() || fv.TenantUID != tn.UID {
		t.Fatalf("PutFunction = %+v", fv)
	}
	if want := []string{"API_KEY", "M", "ZED"}; !slices.Equal(fv.SecretNames, want) {
		t.Fatalf("SecretNames = %v, want %v", fv.SecretNames, want)
	}
	if len(fv.SecretsSealed) == 0 {
		t.Fatal("SecretsSealed empty")
	}
	// The returned maps are copies.
	spec.Secrets["API_KEY"] = "changed"
	spec.Dependencies["ms"] = "0.0.0"
	if fv.Secrets["API_KEY"] != "k" || fv.Dependencies["ms"] != "2.1.3" {
		t.Fatal("PutFunction returned the caller's maps")
	}

	got, err := s.GetFunction(ctx, "acme", "hook")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || got.Code != fv.Code || !maps.Equal(got.Secrets, fv.Secrets) ||
		!maps.Equal(got.Dependencies, fv.Dependencies) || !slices.Equal(got.SecretNames, fv.SecretNames) ||
		!got.CreatedAt.Equal(fv.CreatedAt) || got.TimeoutMS != 30000 {
		t.Fatalf("GetFunction = %+v, want %+v", got, fv)
	}

	// An update: no secrets, no dependencies.
	fv2, created, err := s.PutFunction(ctx, FunctionSpec{Tenant: "acme", Name: "hook", Code: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	if created || fv2.Version != 2 {
		t.Fatalf("update: created=%v version=%d", created, fv2.Version)
	}
	got, err = s.GetFunction(ctx, "acme", "hook")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.Code != "v2" || got.Secrets != nil || got.Dependencies != nil || got.SecretNames != nil || got.SecretsSealed != nil {
		t.Fatalf("GetFunction after update = %+v", got)
	}
}

func TestPutFunctionErrors(t *testing.T) {
	s, _ := newTestStore(t)
	mustTenant(t, s, "acme")
	for _, tc := range []struct {
		name     string
		spec     FunctionSpec
		notFound bool
	}{
		{"missing tenant", FunctionSpec{Tenant: "nope", Name: "f"}, true},
		{"empty tenant", FunctionSpec{Tenant: "", Name: "f"}, false},
		{"empty name", FunctionSpec{Tenant: "acme", Name: ""}, false},
		{"slash in name", FunctionSpec{Tenant: "acme", Name: "a/b"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.PutFunction(testCtx(t), tc.spec)
			if err == nil || errors.Is(err, ErrNotFound) != tc.notFound {
				t.Fatalf("PutFunction: %v (want not-found=%v)", err, tc.notFound)
			}
		})
	}
	if n := count(t, s, CollFunctionVersions, bson.D{}); n != 0 {
		t.Fatalf("%d versions stored by failed puts", n)
	}
}

func TestGetFunctionNotFound(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "other")
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "x"})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "deleted", Code: "x"})
	if err := s.DeleteFunction(ctx, "acme", "deleted"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ tenant, name string }{
		{"acme", "nope"},
		{"acme", "deleted"},
		{"other", "f"}, // another tenant's function of that name
		{"nope", "f"},
		{"acme", "F"},
	} {
		if fv, err := s.GetFunction(ctx, tc.tenant, tc.name); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetFunction(%s, %s) = %+v, %v; want ErrNotFound", tc.tenant, tc.name, fv, err)
		}
	}
}

func TestDeleteFunction(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "other")
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "1"})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "2"})

	if err := s.DeleteFunction(ctx, "other", "f"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteFunction of another tenant's: %v", err)
	}
	if err := s.DeleteFunction(ctx, "acme", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteFunction of a missing function: %v", err)
	}
	if err := s.DeleteFunction(ctx, "nope", "f"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteFunction in a missing tenant: %v", err)
	}
	if err := s.DeleteFunction(ctx, "acme", "f"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, "acme", "f"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteFunction: %v, want ErrNotFound", err)
	}
	// The tombstone is version 3; history is kept.
	var tomb bson.M
	if err := s.versions.FindOne(ctx, bson.D{{Key: "_id", Value: "acme/f/3"}}).Decode(&tomb); err != nil {
		t.Fatalf("tombstone: %v", err)
	}
	if tomb["deleted"] != true || tomb["code"] != nil {
		t.Fatalf("tombstone = %v", tomb)
	}
	if n := count(t, s, CollFunctionVersions, bson.D{{Key: "tenant", Value: "acme"}, {Key: "name", Value: "f"}}); n != 3 {
		t.Fatalf("%d versions, want 3", n)
	}
	// Recreating after a delete counts as a create and continues the numbering.
	fv, created, err := s.PutFunction(ctx, FunctionSpec{Tenant: "acme", Name: "f", Code: "again"})
	if err != nil {
		t.Fatal(err)
	}
	if !created || fv.Version != 4 {
		t.Fatalf("recreate: created=%v version=%d; want true, 4", created, fv.Version)
	}
}

func TestListFunctions(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "other")
	if fns, err := s.ListFunctions(ctx, "acme"); err != nil || fns == nil || len(fns) != 0 {
		t.Fatalf("ListFunctions with none = %v, %v; want an empty non-nil list", fns, err)
	}
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "zeta", Code: "z1"})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "alpha", Code: "a1"})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "alpha", Code: "a2", Secrets: map[string]string{"K": "v"}, Dependencies: map[string]string{"ms": "2.1.3"}, TimeoutMS: 5})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "gone", Code: "g"})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "mid", Code: "m"})
	mustPut(t, s, FunctionSpec{Tenant: "other", Name: "beta", Code: "b"})
	if err := s.DeleteFunction(ctx, "acme", "gone"); err != nil {
		t.Fatal(err)
	}
	fns, err := s.ListFunctions(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name    string
		version int
	}
	var got []row
	for _, fv := range fns {
		got = append(got, row{fv.Name, fv.Version})
		if fv.Code != "" || fv.SecretsSealed != nil || fv.Secrets != nil {
			t.Errorf("%s: code or secrets loaded: %+v", fv.Name, fv)
		}
		if fv.Tenant != "acme" || fv.CreatedAt.IsZero() {
			t.Errorf("%s: %+v", fv.Name, fv)
		}
	}
	want := []row{{"alpha", 2}, {"mid", 1}, {"zeta", 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("ListFunctions = %v, want %v", got, want)
	}
	alpha := fns[0]
	if !slices.Equal(alpha.SecretNames, []string{"K"}) || alpha.Dependencies["ms"] != "2.1.3" || alpha.TimeoutMS != 5 {
		t.Fatalf("alpha = %+v", alpha)
	}
	if fns, err := s.ListFunctions(ctx, "nope"); err != nil || len(fns) != 0 {
		t.Fatalf("ListFunctions of a missing tenant = %v, %v", fns, err)
	}
}

func TestListVersions(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "1", Secrets: map[string]string{"K": "secret-1"}})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "2"})
	if err := s.DeleteFunction(ctx, "acme", "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListVersions(ctx, "acme", "f"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ListVersions of a deleted function: %v, want ErrNotFound", err)
	}
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "4"})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "other", Code: "o"})
	vs, err := s.ListVersions(ctx, "acme", "f")
	if err != nil {
		t.Fatal(err)
	}
	var nums []int
	var codes []string
	for _, v := range vs {
		nums = append(nums, v.Version)
		codes = append(codes, v.Code)
		if v.SecretsSealed != nil || v.Secrets != nil || v.Deleted || v.Name != "f" {
			t.Errorf("version %d: %+v", v.Version, v)
		}
	}
	if !slices.Equal(nums, []int{1, 2, 4}) || !slices.Equal(codes, []string{"1", "2", "4"}) {
		t.Fatalf("ListVersions = %v %v, want [1 2 4] with code", nums, codes)
	}
	if !slices.Equal(vs[0].SecretNames, []string{"K"}) {
		t.Fatalf("version 1 secret names = %v", vs[0].SecretNames)
	}
	for _, tc := range []struct{ tenant, name string }{{"acme", "nope"}, {"nope", "f"}} {
		if _, err := s.ListVersions(ctx, tc.tenant, tc.name); !errors.Is(err, ErrNotFound) {
			t.Errorf("ListVersions(%s, %s): %v, want ErrNotFound", tc.tenant, tc.name, err)
		}
	}
}

func TestGetVersion(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "other")
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "1", Secrets: map[string]string{"K": "v1"}})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "2", Secrets: map[string]string{"K": "v2"}})
	if err := s.DeleteFunction(ctx, "acme", "f"); err != nil {
		t.Fatal(err)
	}
	v1, err := s.GetVersion(ctx, "acme", "f", 1)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != 1 || v1.Code != "1" || v1.Secrets["K"] != "v1" {
		t.Fatalf("GetVersion 1 = %+v", v1)
	}
	for _, tc := range []struct {
		tenant, name string
		version      int
	}{
		{"acme", "f", 3}, // the tombstone
		{"acme", "f", 4},
		{"acme", "f", 0},
		{"acme", "f", -1},
		{"acme", "g", 1},
		{"other", "f", 1},
	} {
		if fv, err := s.GetVersion(ctx, tc.tenant, tc.name, tc.version); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetVersion(%s, %s, %d) = %+v, %v; want ErrNotFound", tc.tenant, tc.name, tc.version, fv, err)
		}
	}
}

func TestRollback(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	v1 := mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "one", Dependencies: map[string]string{"ms": "2.1.3"},
		Secrets: map[string]string{"K": "first"}, TimeoutMS: 1000})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "two", TimeoutMS: 2000})

	rb, err := s.Rollback(ctx, "acme", "f", 1)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Version != 3 || rb.Code != "one" || rb.TimeoutMS != 1000 || !maps.Equal(rb.Dependencies, v1.Dependencies) ||
		rb.Secrets["K"] != "first" || !slices.Equal(rb.SecretNames, []string{"K"}) || rb.Deleted {
		t.Fatalf("Rollback = %+v", rb)
	}
	cur, err := s.GetFunction(ctx, "acme", "f")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Version != 3 || cur.Code != "one" || cur.Secrets["K"] != "first" {
		t.Fatalf("current after rollback = %+v", cur)
	}
	// Version 1 itself is unchanged; history grows.
	if vs, err := s.ListVersions(ctx, "acme", "f"); err != nil || len(vs) != 3 {
		t.Fatalf("ListVersions after rollback: %d, %v", len(vs), err)
	}
	// Rolling back to the current version appends a copy.
	if rb, err := s.Rollback(ctx, "acme", "f", 3); err != nil || rb.Version != 4 {
		t.Fatalf("Rollback to current = %+v, %v", rb, err)
	}

	for _, tc := range []struct {
		name, tenant, fn string
		version          int
	}{
		{"missing version", "acme", "f", 99},
		{"missing function", "acme", "g", 1},
		{"missing tenant", "nope", "f", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Rollback(ctx, tc.tenant, tc.fn, tc.version); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Rollback: %v, want ErrNotFound", err)
			}
		})
	}
	// A deleted function cannot be rolled back (its versions are not listed either).
	if err := s.DeleteFunction(ctx, "acme", "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollback(ctx, "acme", "f", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Rollback of a deleted function: %v, want ErrNotFound", err)
	}
	if _, err := s.Rollback(ctx, "acme", "f", 5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Rollback to a tombstone: %v, want ErrNotFound", err)
	}
}

func TestAppendVersionGivesUpUnderConflict(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	s.maxBackoff = time.Millisecond
	// A writer that always loses: next() inserts the version itself first.
	calls := 0
	_, _, err := s.appendVersion(ctx, "acme", "f", func(prev *FunctionVersion) (FunctionVersion, error) {
		calls++
		v := 1
		if prev != nil {
			v = prev.Version + 1
		}
		if _, err := s.versions.InsertOne(ctx, versionDoc{ID: versionID("acme", "f", v), FunctionVersion: FunctionVersion{Tenant: "acme", Name: "f", Version: v}}); err != nil {
			t.Fatal(err)
		}
		return FunctionVersion{Code: "loser"}, nil
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("appendVersion: %v, want ErrConflict", err)
	}
	if calls != maxAppendAttempts {
		t.Fatalf("%d attempts, want %d", calls, maxAppendAttempts)
	}
	if n := count(t, s, CollFunctionVersions, bson.D{{Key: "code", Value: "loser"}}); n != 0 {
		t.Fatal("the loser's version was stored")
	}
}

func TestFunctionNamesAreCaseSensitive(t *testing.T) {
	s, _ := newTestStore(t)
	mustTenant(t, s, "acme")
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "Hook", Code: "upper"})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "hook", Code: "lower"})
	for name, code := range map[string]string{"Hook": "upper", "hook": "lower"} {
		fv, err := s.GetFunction(testCtx(t), "acme", name)
		if err != nil || fv.Code != code || fv.Version != 1 {
			t.Errorf("GetFunction(%s) = %+v, %v", name, fv, err)
		}
	}
}

// Each Store remembers the last head it saw; another node's writes, a deleted
// and recreated tenant, or a cold start must not mislead it.
func TestHeadHintsAcrossStores(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	a := connect(t, e.URI(), Options{MaxPoolSize: 1})
	b := connect(t, e.URI(), Options{MaxPoolSize: 1})
	ctx := testCtx(t)
	mustTenant(t, a, "acme")
	for i := 1; i <= 3; i++ {
		mustPut(t, a, FunctionSpec{Tenant: "acme", Name: "f", Code: fmt.Sprint("a", i)})
	}
	// b has no hint (cold): gallops from 1.
	if fv, err := b.GetFunction(ctx, "acme", "f"); err != nil || fv.Version != 3 || fv.Code != "a3" {
		t.Fatalf("cold GetFunction = %+v, %v", fv, err)
	}
	// b appends 7 more; a's hint (3) is stale.
	for i := 4; i <= 10; i++ {
		if fv := mustPut(t, b, FunctionSpec{Tenant: "acme", Name: "f", Code: fmt.Sprint("b", i)}); fv.Version != i {
			t.Fatalf("b's put got version %d, want %d", fv.Version, i)
		}
	}
	if fv, err := a.GetFunction(ctx, "acme", "f"); err != nil || fv.Version != 10 || fv.Code != "b10" {
		t.Fatalf("GetFunction with a stale hint = %+v, %v", fv, err)
	}
	if fv, created, err := a.PutFunction(ctx, FunctionSpec{Tenant: "acme", Name: "f", Code: "a11"}); err != nil || fv.Version != 11 || created {
		t.Fatalf("put with a stale hint = %d created=%v, %v", fv.Version, created, err)
	}
	// b deletes (its hint is stale too); a sees the tombstone.
	if err := b.DeleteFunction(ctx, "acme", "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetFunction(ctx, "acme", "f"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetFunction after another node's delete: %v", err)
	}
	if err := a.DeleteFunction(ctx, "acme", "f"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteFunction after another node's delete: %v", err)
	}
	// The tenant is deleted and recreated through b; a's hint (12) points at nothing.
	if err := b.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	mustTenant(t, b, "acme")
	if _, err := a.GetFunction(ctx, "acme", "f"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetFunction in a recreated tenant: %v", err)
	}
	if fv, created, err := a.PutFunction(ctx, FunctionSpec{Tenant: "acme", Name: "f", Code: "new"}); err != nil || fv.Version != 1 || !created {
		t.Fatalf("put in a recreated tenant = %d created=%v, %v", fv.Version, created, err)
	}
	if fv, err := b.GetFunction(ctx, "acme", "f"); err != nil || fv.Version != 1 || fv.Code != "new" {
		t.Fatalf("GetFunction in a recreated tenant = %+v, %v", fv, err)
	}
}

// Galloping and bisecting find the head at every count, cold.
func TestHeadSearch(t *testing.T) {
	s, e := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	cold := connect(t, e.URI(), Options{MaxPoolSize: 1})
	for n := 1; n <= 20; n++ {
		mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: fmt.Sprint(n)})
		cold.heads.Clear()
		fv, err := cold.GetFunction(ctx, "acme", "f")
		if err != nil || fv.Version != n || fv.Code != fmt.Sprint(n) {
			t.Fatalf("after %d puts: GetFunction = %d %q, %v", n, fv.Version, fv.Code, err)
		}
	}
	// Cold, from a version the caller knows exists.
	s.heads.Clear()
	h, err := s.head(ctx, "acme", "f", "", 15, false)
	if err != nil || h == nil || h.Version != 20 {
		t.Fatalf("head(known=15) = %+v, %v", h, err)
	}
}
