package store

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// CreateTenant creates a tenant; ErrExists when the name is taken.
func (s *Store) CreateTenant(ctx context.Context, name string) (Tenant, error) {
	if err := checkName("tenant", name); err != nil {
		return Tenant{}, err
	}
	t := Tenant{Name: name, CreatedAt: now(), UID: randomHex(16)}
	if _, err := s.tenants.InsertOne(ctx, t); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return Tenant{}, fmt.Errorf("store: tenant %q: %w", name, ErrExists)
		}
		return Tenant{}, fmt.Errorf("store: create tenant %q: %w", name, err)
	}
	return t, nil
}

// GetTenant returns a tenant; ErrNotFound when there is none of that name.
func (s *Store) GetTenant(ctx context.Context, name string) (Tenant, error) {
	var t Tenant
	ok, err := findOne(ctx, s.tenants, bson.D{{Key: "_id", Value: name}}, &t)
	if err != nil {
		return Tenant{}, fmt.Errorf("store: get tenant %q: %w", name, err)
	}
	if !ok {
		return Tenant{}, fmt.Errorf("store: tenant %q: %w", name, ErrNotFound)
	}
	return t, nil
}

// ListTenants returns every tenant sorted by name.
func (s *Store) ListTenants(ctx context.Context) ([]Tenant, error) {
	cur, err := s.tenants.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list tenants: %w", err)
	}
	out := []Tenant{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("store: list tenants: %w", err)
	}
	return out, nil
}

// DeleteTenant removes a tenant with its tokens, every version of its
// functions, their storage and its log history; ErrNotFound when there is no such tenant.
//
// The children go first and the tenant document last, so a crash midway leaves
// a tenant that a retried DeleteTenant finishes. After the tenant document is
// gone the children of this incarnation are swept again: a token or version
// written concurrently (its writer checked the tenant just before the delete)
// cannot outlive it. Writers re-check the tenant after their insert as well.
func (s *Store) DeleteTenant(ctx context.Context, name string) error {
	t, err := s.GetTenant(ctx, name)
	if err != nil {
		return err
	}
	byName := bson.D{{Key: "tenant", Value: name}}
	if err := s.deleteChildren(ctx, name, byName); err != nil {
		return err
	}
	if _, err := s.tenants.DeleteOne(ctx, bson.D{{Key: "_id", Value: name}, {Key: "uid", Value: t.UID}}); err != nil {
		return fmt.Errorf("store: delete tenant %q: %w", name, err)
	}
	// Only this incarnation's: the name may already belong to a new tenant.
	return s.deleteChildren(ctx, name, bson.D{{Key: "tenant", Value: name}, {Key: "tenant_uid", Value: t.UID}})
}

func (s *Store) deleteChildren(ctx context.Context, name string, filter bson.D) error {
	if _, err := s.tokens.DeleteMany(ctx, filter); err != nil {
		return fmt.Errorf("store: delete tenant %q: tokens: %w", name, err)
	}
	if _, err := s.versions.DeleteMany(ctx, filter); err != nil {
		return fmt.Errorf("store: delete tenant %q: functions: %w", name, err)
	}
	if _, err := s.storage().DeleteMany(ctx, filter); err != nil {
		return fmt.Errorf("store: delete tenant %q: storage: %w", name, err)
	}
	if _, err := s.logs().DeleteMany(ctx, filter); err != nil {
		return fmt.Errorf("store: delete tenant %q: logs: %w", name, err)
	}
	return nil
}

// tenantStillThere reports whether the tenant incarnation uid still exists;
// writers call it after inserting a child to detect a concurrent DeleteTenant.
func (s *Store) tenantStillThere(ctx context.Context, name, uid string) (bool, error) {
	t, err := s.GetTenant(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return t.UID == uid, nil
}

// checkName rejects names the document ids cannot carry unambiguously. Callers
// validate names against the API's stricter patterns; this is the store's floor.
func checkName(what, name string) error {
	if name == "" {
		return fmt.Errorf("store: empty %s name", what)
	}
	for _, r := range name {
		if r == '/' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("store: %s name %q has a character not allowed", what, name)
		}
	}
	return nil
}
