package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestCreateGetTenant(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	before := time.Now().Add(-time.Second)
	tn, err := s.CreateTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if tn.Name != "acme" || tn.CreatedAt.Before(before) || tn.CreatedAt.After(time.Now().Add(time.Second)) || len(tn.UID) != 32 {
		t.Fatalf("CreateTenant = %+v", tn)
	}
	got, err := s.GetTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != tn.Name || !got.CreatedAt.Equal(tn.CreatedAt) || got.UID != tn.UID {
		t.Fatalf("GetTenant = %+v, want %+v", got, tn)
	}
	if _, err := s.CreateTenant(ctx, "acme"); !errors.Is(err, ErrExists) {
		t.Fatalf("second CreateTenant: %v, want ErrExists", err)
	}
	if _, err := s.GetTenant(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetTenant(nope): %v, want ErrNotFound", err)
	}
}

func TestCreateTenantBadNames(t *testing.T) {
	s, _ := newTestStore(t)
	for _, name := range []string{"", "a/b", "a\x00b", "tab\there"} {
		if _, err := s.CreateTenant(testCtx(t), name); err == nil || errors.Is(err, ErrExists) {
			t.Errorf("CreateTenant(%q): %v, want a validation error", name, err)
		}
	}
}

func TestCreateTenantConcurrent(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	stores := []*Store{connect(t, e.URI(), Options{MaxPoolSize: 1}), connect(t, e.URI(), Options{MaxPoolSize: 1})}
	const n = 8
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			<-start
			_, err := stores[i%2].CreateTenant(testCtx(t), "race")
			errs <- err
		}()
	}
	close(start)
	created := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			created++
		case !errors.Is(err, ErrExists):
			t.Errorf("CreateTenant: %v", err)
		}
	}
	if created != 1 {
		t.Fatalf("%d concurrent CreateTenant calls succeeded, want 1", created)
	}
}

func TestListTenants(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	got, err := s.ListTenants(ctx)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("ListTenants on an empty store = %v, %v; want an empty non-nil list", got, err)
	}
	for _, n := range []string{"zeta", "acme", "m-1", "beta"} {
		mustTenant(t, s, n)
	}
	got, err = s.ListTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tn := range got {
		names = append(names, tn.Name)
		if tn.CreatedAt.IsZero() {
			t.Errorf("%s: zero CreatedAt", tn.Name)
		}
	}
	if want := []string{"acme", "beta", "m-1", "zeta"}; !slices.Equal(names, want) {
		t.Fatalf("ListTenants = %v, want %v", names, want)
	}
}

func TestDeleteTenant(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "other")
	_, acmeSecret, err := s.CreateToken(ctx, "acme", "ci")
	if err != nil {
		t.Fatal(err)
	}
	_, otherSecret, err := s.CreateToken(ctx, "other", "ci")
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "1"})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "2"})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "g", Code: "1"})
	mustPut(t, s, FunctionSpec{Tenant: "other", Name: "f", Code: "keep"})

	if err := s.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTenant(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetTenant after delete: %v", err)
	}
	for _, coll := range []string{CollTokens, CollFunctionVersions} {
		if n := count(t, s, coll, bson.D{{Key: "tenant", Value: "acme"}}); n != 0 {
			t.Errorf("%d %s documents of the deleted tenant remain", n, coll)
		}
	}
	if _, err := s.Authenticate(ctx, acmeSecret); !errors.Is(err, ErrNotFound) {
		t.Errorf("token of a deleted tenant: %v", err)
	}
	// The other tenant is untouched.
	if p, err := s.Authenticate(ctx, otherSecret); err != nil || p.Tenant != "other" {
		t.Errorf("other tenant's token: %+v, %v", p, err)
	}
	if fv, err := s.GetFunction(ctx, "other", "f"); err != nil || fv.Code != "keep" {
		t.Errorf("other tenant's function: %+v, %v", fv, err)
	}
	// Deleting again: not found.
	if err := s.DeleteTenant(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteTenant: %v, want ErrNotFound", err)
	}
	// The name can be taken again, and starts empty.
	mustTenant(t, s, "acme")
	if fns, err := s.ListFunctions(ctx, "acme"); err != nil || len(fns) != 0 {
		t.Fatalf("functions of the recreated tenant: %v, %v", fns, err)
	}
	if toks, err := s.ListTokens(ctx, "acme"); err != nil || len(toks) != 0 {
		t.Fatalf("tokens of the recreated tenant: %v, %v", toks, err)
	}
}

// A DeleteTenant that crashed after removing some children leaves the tenant
// document; retrying finishes the job.
func TestDeleteTenantResumesAfterCrash(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	if _, _, err := s.CreateToken(ctx, "acme", ""); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "1"})
	// The crash: tokens gone, versions and the tenant still there.
	if _, err := s.tokens.DeleteMany(ctx, bson.D{{Key: "tenant", Value: "acme"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatalf("retried DeleteTenant: %v", err)
	}
	if n := count(t, s, CollFunctionVersions, bson.D{{Key: "tenant", Value: "acme"}}); n != 0 {
		t.Fatalf("%d versions remain", n)
	}
	if _, err := s.GetTenant(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tenant remains: %v", err)
	}
}

// A token left behind by an earlier incarnation of a tenant name (minted while
// the tenant was being deleted, then a crash) never authenticates for the new one.
func TestTokenOfEarlierIncarnation(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	tok, secret, err := s.CreateToken(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	// Simulate the leftover.
	if _, err := s.tokens.InsertOne(ctx, tok); err != nil {
		t.Fatal(err)
	}
	mustTenant(t, s, "acme")
	if p, err := s.Authenticate(ctx, secret); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old incarnation's token authenticates: %+v, %v", p, err)
	}
}
