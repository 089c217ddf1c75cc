package store

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

var (
	tenantSecretRE = regexp.MustCompile(`^wht_[A-Za-z0-9_-]{43}$`)
	adminSecretRE  = regexp.MustCompile(`^wha_[A-Za-z0-9_-]{43}$`)
	tokenIDRE      = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func TestCreateToken(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	tn := mustTenant(t, s, "acme")
	tok, secret, err := s.CreateToken(ctx, "acme", "ci deploys")
	if err != nil {
		t.Fatal(err)
	}
	if !tenantSecretRE.MatchString(secret) {
		t.Errorf("secret %q has the wrong form", secret)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(secret, "wht_")); err != nil || len(raw) != 32 {
		t.Errorf("secret does not carry 32 random bytes: %v", err)
	}
	if !tokenIDRE.MatchString(tok.ID) {
		t.Errorf("id %q has the wrong form", tok.ID)
	}
	sum := sha256.Sum256([]byte(secret))
	if tok.Hash != hex.EncodeToString(sum[:]) {
		t.Errorf("hash %q is not the hex sha256 of the secret", tok.Hash)
	}
	if tok.Tenant != "acme" || tok.Description != "ci deploys" || tok.CreatedAt.IsZero() || tok.TenantUID != tn.UID {
		t.Errorf("token %+v", tok)
	}
	// Only the hash is stored.
	var raw bson.M
	if err := s.tokens.FindOne(ctx, bson.D{{Key: "_id", Value: tok.ID}}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for k, v := range raw {
		if str, ok := v.(string); ok && strings.Contains(str, strings.TrimPrefix(secret, "wht_")) {
			t.Errorf("field %s holds the secret", k)
		}
	}
	// Two tokens differ.
	tok2, secret2, err := s.CreateToken(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if tok2.ID == tok.ID || secret2 == secret || tok2.Hash == tok.Hash {
		t.Error("two tokens share an id, secret or hash")
	}
	if _, _, err := s.CreateToken(ctx, "nope", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("CreateToken for a missing tenant: %v, want ErrNotFound", err)
	}
}

func TestTokenHashUnique(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	tok, _, err := s.CreateToken(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	dup := tok
	dup.ID = "other-id"
	if _, err := s.tokens.InsertOne(ctx, dup); err == nil {
		t.Fatal("a second token with the same hash was stored")
	}
}

func TestListTokens(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "other")
	if toks, err := s.ListTokens(ctx, "acme"); err != nil || toks == nil || len(toks) != 0 {
		t.Fatalf("ListTokens with none = %v, %v; want an empty non-nil list", toks, err)
	}
	var want []string
	for i := range 4 {
		tok, _, err := s.CreateToken(ctx, "acme", strings.Repeat("d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, tok.ID)
	}
	if _, _, err := s.CreateToken(ctx, "other", ""); err != nil {
		t.Fatal(err)
	}
	toks, err := s.ListTokens(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, tok := range toks {
		ids = append(ids, tok.ID)
		if tok.Tenant != "acme" {
			t.Errorf("token of tenant %q listed", tok.Tenant)
		}
		// Sorted by created_at; ties (same millisecond) broken by id.
		if i > 0 {
			prev := toks[i-1]
			if c := tok.CreatedAt.Compare(prev.CreatedAt); c < 0 || (c == 0 && tok.ID < prev.ID) {
				t.Errorf("tokens not sorted by (created_at, id): %v", toks)
			}
		}
		if tok.Hash == "" || tok.CreatedAt.IsZero() {
			t.Errorf("listed token lacks hash or created_at: %+v", tok)
		}
	}
	if len(ids) != len(want) {
		t.Fatalf("ListTokens = %v, want the 4 ids %v", ids, want)
	}
	for _, id := range want {
		if !slices.Contains(ids, id) {
			t.Fatalf("ListTokens = %v lacks %s", ids, id)
		}
	}
	if _, err := s.ListTokens(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListTokens of a missing tenant: %v, want ErrNotFound", err)
	}
}

func TestRevokeToken(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "other")
	tok, secret, err := s.CreateToken(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	keep, keepSecret, err := s.CreateToken(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tenant, id string
	}{
		{"another tenant's", "other", tok.ID},
		{"unknown id", "acme", "0123"},
		{"missing tenant", "nope", tok.ID},
		{"empty id", "acme", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.RevokeToken(ctx, tc.tenant, tc.id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("RevokeToken: %v, want ErrNotFound", err)
			}
		})
	}
	if _, err := s.Authenticate(ctx, secret); err != nil {
		t.Fatalf("a failed revoke broke the token: %v", err)
	}
	if err := s.RevokeToken(ctx, "acme", tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, secret); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked token: %v, want ErrNotFound", err)
	}
	if err := s.RevokeToken(ctx, "acme", tok.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v, want ErrNotFound", err)
	}
	if p, err := s.Authenticate(ctx, keepSecret); err != nil || p.TokenID != keep.ID {
		t.Fatalf("the other token: %+v, %v", p, err)
	}
}

func TestAuthenticate(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	admin, err := s.EnsureAdminToken(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	mustTenant(t, s, "acme")
	mustTenant(t, s, "gone")
	tok, secret, err := s.CreateToken(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	_, goneSecret, err := s.CreateToken(ctx, "gone", "")
	if err != nil {
		t.Fatal(err)
	}
	// Orphan the token of "gone" by removing only the tenant document.
	if _, err := s.tenants.DeleteOne(ctx, bson.D{{Key: "_id", Value: "gone"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		secret string
		want   Principal
		err    error
	}{
		{"admin", admin, Principal{Admin: true}, nil},
		{"tenant", secret, Principal{Tenant: "acme", TokenID: tok.ID}, nil},
		{"empty", "", Principal{}, ErrNotFound},
		{"unknown tenant-like", "wht_" + strings.Repeat("A", 43), Principal{}, ErrNotFound},
		{"unknown admin-like", "wha_" + strings.Repeat("A", 43), Principal{}, ErrNotFound},
		{"arbitrary", "hello", Principal{}, ErrNotFound},
		{"hash instead of secret", tok.Hash, Principal{}, ErrNotFound},
		{"secret with extra byte", secret + "x", Principal{}, ErrNotFound},
		{"tenant no longer exists", goneSecret, Principal{}, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.Authenticate(ctx, tc.secret)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("Authenticate error = %v, want %v", err, tc.err)
			}
			if p != tc.want {
				t.Fatalf("Authenticate = %+v, want %+v", p, tc.want)
			}
			if err != nil && tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("error %q contains the secret", err)
			}
		})
	}
}

func TestEnsureAdminToken(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	adminDocs := func() int64 { return count(t, s, CollSettings, bson.D{{Key: "_id", Value: "admin_token"}}) }

	gen, err := s.EnsureAdminToken(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !adminSecretRE.MatchString(gen) {
		t.Fatalf("generated admin token %q has the wrong form", gen)
	}
	if p, err := s.Authenticate(ctx, gen); err != nil || !p.Admin {
		t.Fatalf("generated admin token: %+v, %v", p, err)
	}
	// Second start: already there, nothing printed, still valid.
	again, err := s.EnsureAdminToken(ctx, "")
	if err != nil || again != "" {
		t.Fatalf("EnsureAdminToken again = %q, %v; want \"\"", again, err)
	}
	if _, err := s.Authenticate(ctx, gen); err != nil {
		t.Fatal(err)
	}
	// Stored hashed only.
	var doc bson.M
	if err := s.settings.FindOne(ctx, bson.D{{Key: "_id", Value: "admin_token"}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(gen))
	if doc["hash"] != hex.EncodeToString(sum[:]) {
		t.Fatalf("stored admin doc %v is not the hash", doc)
	}

	// A configured token replaces the generated one.
	const configured = "my-configured-admin-token"
	if got, err := s.EnsureAdminToken(ctx, configured); err != nil || got != "" {
		t.Fatalf("EnsureAdminToken(configured) = %q, %v", got, err)
	}
	if p, err := s.Authenticate(ctx, configured); err != nil || !p.Admin {
		t.Fatalf("configured admin token: %+v, %v", p, err)
	}
	if _, err := s.Authenticate(ctx, gen); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replaced admin token still works: %v", err)
	}
	// And is kept when later starts configure nothing.
	if got, err := s.EnsureAdminToken(ctx, ""); err != nil || got != "" {
		t.Fatalf("EnsureAdminToken(\"\") after configured = %q, %v", got, err)
	}
	if _, err := s.Authenticate(ctx, configured); err != nil {
		t.Fatal(err)
	}
	// Reconfiguring replaces it again.
	if _, err := s.EnsureAdminToken(ctx, "second-configured-token"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, configured); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old configured token still works: %v", err)
	}
	if n := adminDocs(); n != 1 {
		t.Fatalf("%d admin token documents", n)
	}
}

func TestEnsureAdminTokenConfiguredFirst(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	// A configured token that looks like a tenant token still authenticates as admin.
	const configured = "wht_configured-as-admin"
	if got, err := s.EnsureAdminToken(ctx, configured); err != nil || got != "" {
		t.Fatalf("EnsureAdminToken = %q, %v", got, err)
	}
	if p, err := s.Authenticate(ctx, configured); err != nil || !p.Admin {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
}
