package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// maxAppendAttempts bounds the insert-with-retry of a new version; each lost
// attempt means another writer appended a version in between.
const maxAppendAttempts = 50

// defaultMaxBackoff caps the random wait between append attempts.
const defaultMaxBackoff = 50 * time.Millisecond

// ErrConflict is returned when a new version could not be appended within
// maxAppendAttempts because other writers kept winning.
var ErrConflict = errors.New("store: too many concurrent writers")

// versionDoc is the stored form of a FunctionVersion.
type versionDoc struct {
	ID              string `bson:"_id"`
	FunctionVersion `bson:",inline"`
}

func versionID(tenant, name string, version int) string {
	return tenant + "/" + name + "/" + strconv.Itoa(version)
}

func functionFilter(tenant, name string) bson.D {
	return bson.D{{Key: "tenant", Value: tenant}, {Key: "name", Value: name}}
}

// secretsAD binds sealed secrets to their function, so a sealed value copied
// into another tenant's or function's document does not open.
func secretsAD(tenant, name string) []byte {
	return []byte("wharf/function-secrets/v1\x00" + tenant + "\x00" + name)
}

// PutFunction appends the next version of a function. created reports whether
// the function had no live version before (never existed, or was deleted).
// ErrNotFound when the tenant does not exist.
func (s *Store) PutFunction(ctx context.Context, spec FunctionSpec) (FunctionVersion, bool, error) {
	if err := checkName("tenant", spec.Tenant); err != nil {
		return FunctionVersion{}, false, err
	}
	if err := checkName("function", spec.Name); err != nil {
		return FunctionVersion{}, false, err
	}
	fv := FunctionVersion{
		Tenant:           spec.Tenant,
		Name:             spec.Name,
		Code:             spec.Code,
		Compiled:         spec.Compiled,
		Dependencies:     cloneOrNil(spec.Dependencies),
		TimeoutMS:        spec.TimeoutMS,
		MaxRequestBytes:  spec.MaxRequestBytes,
		MaxResponseBytes: spec.MaxResponseBytes,
	}
	if len(spec.Secrets) > 0 {
		plain, err := json.Marshal(spec.Secrets)
		if err != nil {
			return FunctionVersion{}, false, fmt.Errorf("store: encoding secrets of %s/%s: %w", spec.Tenant, spec.Name, err)
		}
		fv.SecretsSealed, err = s.box.SealWithAD(plain, secretsAD(spec.Tenant, spec.Name))
		clear(plain)
		if err != nil {
			return FunctionVersion{}, false, fmt.Errorf("store: sealing secrets of %s/%s: %w", spec.Tenant, spec.Name, err)
		}
		fv.SecretNames = slices.Sorted(maps.Keys(spec.Secrets))
	}
	out, prev, err := s.appendVersion(ctx, spec.Tenant, spec.Name, func(*FunctionVersion) (FunctionVersion, error) {
		return fv, nil
	})
	if err != nil {
		return FunctionVersion{}, false, err
	}
	out.Secrets = cloneOrNil(spec.Secrets)
	return out, prev == nil || prev.Deleted, nil
}

// GetFunction returns the current version of a function with its secrets
// opened. ErrNotFound when it does not exist or was deleted.
func (s *Store) GetFunction(ctx context.Context, tenant, name string) (FunctionVersion, error) {
	h, err := s.head(ctx, tenant, name, "", 0, true)
	if err != nil {
		return FunctionVersion{}, err
	}
	if h == nil || h.Deleted {
		return FunctionVersion{}, fmt.Errorf("store: function %s/%s: %w", tenant, name, ErrNotFound)
	}
	return s.opened(*h)
}

// ListFunctions returns the current version of each live function of a tenant
// sorted by name, without code and sealed secrets (secret names are included).
func (s *Store) ListFunctions(ctx context.Context, tenant string) ([]FunctionVersion, error) {
	// FerretDB has no $group accumulators but $count/$sum, so the newest version
	// of each name is picked here from a projection of every version.
	cur, err := s.versions.Find(ctx, bson.D{{Key: "tenant", Value: tenant}}, options.Find().
		SetProjection(bson.D{{Key: "code", Value: 0}, {Key: "compiled", Value: 0}, {Key: "secrets_sealed", Value: 0}}).
		SetSort(bson.D{{Key: "name", Value: 1}, {Key: "version", Value: -1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list functions of %s: %w", tenant, err)
	}
	defer cur.Close(ctx)
	out := []FunctionVersion{}
	last := ""
	first := true
	for cur.Next(ctx) {
		var d versionDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("store: list functions of %s: %w", tenant, err)
		}
		if !first && d.Name == last {
			continue // an older version
		}
		first, last = false, d.Name
		if !d.Deleted {
			out = append(out, d.FunctionVersion)
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("store: list functions of %s: %w", tenant, err)
	}
	return out, nil
}

// DeleteFunction deletes a function by appending a tombstone version, then
// its storage. ErrNotFound when it has no live version.
func (s *Store) DeleteFunction(ctx context.Context, tenant, name string) error {
	_, _, err := s.appendVersion(ctx, tenant, name, func(prev *FunctionVersion) (FunctionVersion, error) {
		if prev == nil || prev.Deleted {
			return FunctionVersion{}, fmt.Errorf("store: function %s/%s: %w", tenant, name, ErrNotFound)
		}
		return FunctionVersion{Tenant: tenant, Name: name, Deleted: true}, nil
	})
	if errors.Is(err, ErrNotFound) {
		// A retry after a failed storage delete still removes the storage.
		if serr := s.DeleteStorage(ctx, tenant, name); serr != nil {
			return serr
		}
	}
	if err != nil {
		return err
	}
	return s.DeleteStorage(ctx, tenant, name)
}

// ListVersions returns the stored versions of a live function in ascending
// order, tombstones left out, with code but without sealed secrets (secret
// names only). ErrNotFound when the function does not exist or was deleted.
func (s *Store) ListVersions(ctx context.Context, tenant, name string) ([]FunctionVersion, error) {
	cur, err := s.versions.Find(ctx, functionFilter(tenant, name), options.Find().
		SetProjection(bson.D{{Key: "secrets_sealed", Value: 0}}).
		SetSort(bson.D{{Key: "version", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list versions of %s/%s: %w", tenant, name, err)
	}
	var docs []versionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("store: list versions of %s/%s: %w", tenant, name, err)
	}
	if len(docs) == 0 || docs[len(docs)-1].Deleted {
		return nil, fmt.Errorf("store: function %s/%s: %w", tenant, name, ErrNotFound)
	}
	out := make([]FunctionVersion, 0, len(docs))
	for _, d := range docs {
		if !d.Deleted {
			out = append(out, d.FunctionVersion)
		}
	}
	return out, nil
}

// GetVersion returns one version of a function with its secrets opened.
// ErrNotFound when there is no such version (or it is a tombstone).
func (s *Store) GetVersion(ctx context.Context, tenant, name string, version int) (FunctionVersion, error) {
	fv, err := s.getVersionSealed(ctx, tenant, name, version)
	if err != nil {
		return FunctionVersion{}, err
	}
	return s.opened(fv)
}

func (s *Store) getVersionSealed(ctx context.Context, tenant, name string, version int) (FunctionVersion, error) {
	var d versionDoc
	ok, err := findOne(ctx, s.versions, bson.D{{Key: "_id", Value: versionID(tenant, name, version)}}, &d)
	if err != nil {
		return FunctionVersion{}, fmt.Errorf("store: get version %d of %s/%s: %w", version, tenant, name, err)
	}
	if !ok || d.Deleted || d.Tenant != tenant || d.Name != name || d.Version != version {
		return FunctionVersion{}, fmt.Errorf("store: version %d of function %s/%s: %w", version, tenant, name, ErrNotFound)
	}
	return d.FunctionVersion, nil
}

// Rollback appends a new version of a live function copying the code,
// dependencies, secrets and timeout of an earlier version, and returns it with
// secrets opened. ErrNotFound when the function is not live or has no such version.
func (s *Store) Rollback(ctx context.Context, tenant, name string, version int) (FunctionVersion, error) {
	src, err := s.getVersionSealed(ctx, tenant, name, version)
	if err != nil {
		return FunctionVersion{}, err
	}
	out, _, err := s.appendVersion(ctx, tenant, name, func(prev *FunctionVersion) (FunctionVersion, error) {
		if prev == nil || prev.Deleted {
			return FunctionVersion{}, fmt.Errorf("store: function %s/%s: %w", tenant, name, ErrNotFound)
		}
		return FunctionVersion{
			Tenant:           tenant,
			Name:             name,
			Code:             src.Code,
			Compiled:         src.Compiled,
			Dependencies:     src.Dependencies,
			SecretNames:      src.SecretNames,
			SecretsSealed:    src.SecretsSealed,
			TimeoutMS:        src.TimeoutMS,
			MaxRequestBytes:  src.MaxRequestBytes,
			MaxResponseBytes: src.MaxResponseBytes,
		}, nil
	})
	if err != nil {
		return FunctionVersion{}, err
	}
	return s.opened(out)
}

// appendVersion inserts version max+1 of a function, where max is the current
// highest version, retrying when another writer inserted that version first:
// the unique index on {tenant, name, version} (and the _id) is the
// compare-and-set. next builds the new version from the current one (nil when
// none) or refuses with an error. It returns the inserted version and the one it
// followed (nil when none).
//
// Writers of one function in this process take turns (a local lock): it does
// not make anything correct, but writers that would only collide with each
// other do not burn attempts; collisions are then between processes only.
func (s *Store) appendVersion(ctx context.Context, tenant, name string, next func(prev *FunctionVersion) (FunctionVersion, error)) (FunctionVersion, *FunctionVersion, error) {
	t, err := s.GetTenant(ctx, tenant)
	if err != nil {
		return FunctionVersion{}, nil, err
	}
	unlock, err := s.locks.lock(ctx, tenant+"/"+name)
	if err != nil {
		return FunctionVersion{}, nil, fmt.Errorf("store: write function %s/%s: %w", tenant, name, err)
	}
	defer unlock()

	known := 0 // a version known to exist
	for attempt := range maxAppendAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt, s.maxBackoff); err != nil {
				return FunctionVersion{}, nil, fmt.Errorf("store: write function %s/%s: %w", tenant, name, err)
			}
		}
		prev, err := s.head(ctx, tenant, name, t.UID, known, false)
		if err != nil {
			return FunctionVersion{}, nil, err
		}
		fv, err := next(prev)
		if err != nil {
			return FunctionVersion{}, nil, err
		}
		fv.Tenant, fv.Name, fv.TenantUID = tenant, name, t.UID
		fv.Version = 1
		if prev != nil {
			fv.Version = prev.Version + 1
		}
		fv.CreatedAt = now()
		fv.Secrets = nil
		_, err = s.versions.InsertOne(ctx, versionDoc{ID: versionID(tenant, name, fv.Version), FunctionVersion: fv})
		if mongo.IsDuplicateKeyError(err) {
			known = fv.Version // another writer appended this version first
			continue
		}
		if err != nil {
			return FunctionVersion{}, nil, fmt.Errorf("store: write version %d of %s/%s: %w", fv.Version, tenant, name, err)
		}
		// A concurrent DeleteTenant may have removed the tenant after we read
		// it; then take the version back. (If the check itself fails, the
		// version was written: report that; DeleteTenant sweeps twice anyway.)
		if ok, err := s.tenantStillThere(ctx, tenant, t.UID); err == nil && !ok {
			s.forgetHead(tenant, name)
			if _, err := s.versions.DeleteOne(ctx, bson.D{{Key: "_id", Value: versionID(tenant, name, fv.Version)}}); err != nil {
				return FunctionVersion{}, nil, fmt.Errorf("store: removing version %d of %s/%s of a deleted tenant: %w", fv.Version, tenant, name, err)
			}
			return FunctionVersion{}, nil, fmt.Errorf("store: tenant %q: %w", tenant, ErrNotFound)
		}
		s.rememberHead(&fv)
		return fv, prev, nil
	}
	return FunctionVersion{}, nil, fmt.Errorf("store: write function %s/%s: %w", tenant, name, ErrConflict)
}

// backoff sleeps a random time that grows with the attempt (full jitter,
// capped), so writers that collided spread out.
func backoff(ctx context.Context, attempt int, limit time.Duration) error {
	ceiling := max(min(time.Millisecond<<min(attempt, 6), limit), time.Microsecond)
	t := time.NewTimer(rand.N(ceiling) + time.Millisecond/4)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// opened returns fv with Secrets filled from SecretsSealed.
func (s *Store) opened(fv FunctionVersion) (FunctionVersion, error) {
	fv.Secrets = nil
	if len(fv.SecretsSealed) == 0 {
		return fv, nil
	}
	plain, err := s.box.OpenWithAD(fv.SecretsSealed, secretsAD(fv.Tenant, fv.Name))
	if err != nil {
		return FunctionVersion{}, fmt.Errorf("store: secrets of %s/%s version %d: %w", fv.Tenant, fv.Name, fv.Version, err)
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, &fv.Secrets); err != nil {
		// The decoder's error could quote plaintext; do not wrap it.
		return FunctionVersion{}, fmt.Errorf("store: secrets of %s/%s version %d: malformed after opening", fv.Tenant, fv.Name, fv.Version)
	}
	return fv, nil
}

func cloneOrNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
