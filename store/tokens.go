package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Token secret prefixes: tenant tokens and generated admin tokens.
const (
	TenantTokenPrefix = "wht_"
	AdminTokenPrefix  = "wha_"
)

const adminTokenID = "admin_token"

type adminTokenDoc struct {
	ID   string `bson:"_id"`
	Hash string `bson:"hash"`
}

// newSecret returns prefix + base64url (unpadded) of 32 random bytes.
func newSecret(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// hashSecret is the stored form of a token: hex sha256.
func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// CreateToken mints a token for a tenant and returns it with its secret, which
// is not stored and cannot be read again. ErrNotFound when there is no such tenant.
func (s *Store) CreateToken(ctx context.Context, tenant, description string) (Token, string, error) {
	t, err := s.GetTenant(ctx, tenant)
	if err != nil {
		return Token{}, "", err
	}
	secret := newSecret(TenantTokenPrefix)
	tok := Token{
		ID:          randomHex(16),
		Tenant:      tenant,
		Description: description,
		Hash:        hashSecret(secret),
		CreatedAt:   now(),
		TenantUID:   t.UID,
	}
	if _, err := s.tokens.InsertOne(ctx, tok); err != nil {
		return Token{}, "", fmt.Errorf("store: create token for tenant %q: %w", tenant, err)
	}
	// A concurrent DeleteTenant may have removed the tenant after we read it;
	// then take the token back. (Authenticate checks the tenant's UID as well,
	// so a token that outlives its tenant never authenticates.)
	if ok, err := s.tenantStillThere(ctx, tenant, t.UID); err == nil && !ok {
		if _, err := s.tokens.DeleteOne(ctx, bson.D{{Key: "_id", Value: tok.ID}}); err != nil {
			return Token{}, "", fmt.Errorf("store: removing token of deleted tenant %q: %w", tenant, err)
		}
		return Token{}, "", fmt.Errorf("store: tenant %q: %w", tenant, ErrNotFound)
	}
	return tok, secret, nil
}

// ListTokens returns a tenant's tokens (hashes included, never secrets) oldest
// first. ErrNotFound when there is no such tenant.
func (s *Store) ListTokens(ctx context.Context, tenant string) ([]Token, error) {
	if _, err := s.GetTenant(ctx, tenant); err != nil {
		return nil, err
	}
	cur, err := s.tokens.Find(ctx, bson.D{{Key: "tenant", Value: tenant}},
		options.Find().SetSort(bson.D{{Key: "created_at", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list tokens of tenant %q: %w", tenant, err)
	}
	out := []Token{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("store: list tokens of tenant %q: %w", tenant, err)
	}
	return out, nil
}

// RevokeToken deletes a tenant's token; ErrNotFound when the tenant has no token with that id.
func (s *Store) RevokeToken(ctx context.Context, tenant, id string) error {
	res, err := s.tokens.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "tenant", Value: tenant}})
	if err != nil {
		return fmt.Errorf("store: revoke token of tenant %q: %w", tenant, err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("store: token of tenant %q: %w", tenant, ErrNotFound)
	}
	return nil
}

// Authenticate resolves a token secret to the admin or to a tenant token.
// ErrNotFound when the secret is unknown, revoked, or its tenant is gone.
func (s *Store) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if secret == "" {
		return Principal{}, fmt.Errorf("store: token: %w", ErrNotFound)
	}
	h := hashSecret(secret)
	// Look where the prefix says first; a configured admin token may have any form.
	if strings.HasPrefix(secret, TenantTokenPrefix) {
		if p, err := s.authTenant(ctx, h); !errors.Is(err, ErrNotFound) {
			return p, err
		}
		return s.authAdmin(ctx, h)
	}
	if p, err := s.authAdmin(ctx, h); !errors.Is(err, ErrNotFound) {
		return p, err
	}
	return s.authTenant(ctx, h)
}

func (s *Store) authAdmin(ctx context.Context, h string) (Principal, error) {
	var doc adminTokenDoc
	ok, err := findOne(ctx, s.settings, bson.D{{Key: "_id", Value: adminTokenID}}, &doc)
	if err != nil {
		return Principal{}, fmt.Errorf("store: authenticate: %w", err)
	}
	if !ok || subtle.ConstantTimeCompare([]byte(doc.Hash), []byte(h)) != 1 {
		return Principal{}, fmt.Errorf("store: token: %w", ErrNotFound)
	}
	return Principal{Admin: true}, nil
}

func (s *Store) authTenant(ctx context.Context, h string) (Principal, error) {
	var tok Token
	ok, err := findOne(ctx, s.tokens, bson.D{{Key: "hash", Value: h}}, &tok)
	if err != nil {
		return Principal{}, fmt.Errorf("store: authenticate: %w", err)
	}
	if !ok || subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(h)) != 1 {
		return Principal{}, fmt.Errorf("store: token: %w", ErrNotFound)
	}
	t, err := s.GetTenant(ctx, tok.Tenant)
	if errors.Is(err, ErrNotFound) || (err == nil && t.UID != tok.TenantUID) {
		return Principal{}, fmt.Errorf("store: token: %w", ErrNotFound)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("store: authenticate: %w", err)
	}
	return Principal{Tenant: tok.Tenant, TokenID: tok.ID}, nil
}

// EnsureAdminToken makes sure an admin token exists.
//
// With configured != "" its hash replaces the stored one and "" is returned.
// With configured == "" and no stored admin token, a new secret is generated,
// its hash stored, and the secret returned (for the caller to print once);
// when one is stored already, "" is returned. When several nodes start at once
// exactly one generates the token; the others return "".
func (s *Store) EnsureAdminToken(ctx context.Context, configured string) (string, error) {
	if configured != "" {
		doc := adminTokenDoc{ID: adminTokenID, Hash: hashSecret(configured)}
		_, err := s.settings.ReplaceOne(ctx, bson.D{{Key: "_id", Value: adminTokenID}}, doc, options.Replace().SetUpsert(true))
		if err != nil {
			if mongo.IsDuplicateKeyError(err) { // a concurrent upsert inserted first; replace it now
				_, err = s.settings.ReplaceOne(ctx, bson.D{{Key: "_id", Value: adminTokenID}}, doc)
			}
			if err != nil {
				return "", fmt.Errorf("store: storing configured admin token: %w", err)
			}
		}
		return "", nil
	}
	var existing adminTokenDoc
	ok, err := findOne(ctx, s.settings, bson.D{{Key: "_id", Value: adminTokenID}}, &existing)
	if err != nil {
		return "", fmt.Errorf("store: reading admin token: %w", err)
	}
	if ok {
		return "", nil
	}
	secret := newSecret(AdminTokenPrefix)
	if _, err := s.settings.InsertOne(ctx, adminTokenDoc{ID: adminTokenID, Hash: hashSecret(secret)}); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return "", nil // another node generated it (and printed it)
		}
		return "", fmt.Errorf("store: storing generated admin token: %w", err)
	}
	return secret, nil
}
