package store

import (
	"context"
	"fmt"
	"hash/fnv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// headHint is what a Store remembers of the highest version of a function it
// last saw. It is only a hint: head verifies it unless told it may trust it.
type headHint struct {
	tenantUID string
	version   int
	deleted   bool
}

func headKey(tenant, name string) string { return tenant + "/" + name }

func (s *Store) rememberHead(fv *FunctionVersion) {
	s.heads.Store(headKey(fv.Tenant, fv.Name), headHint{tenantUID: fv.TenantUID, version: fv.Version, deleted: fv.Deleted})
}

func (s *Store) forgetHead(tenant, name string) { s.heads.Delete(headKey(tenant, name)) }

// head returns the highest version of a function, or nil when there is none.
// Unless full is set only its number, tombstone flag and tenant UID are loaded.
//
// FerretDB scans a whole collection for every query, and this one holds every
// version of every function. A filter on _id alone is at least evaluated
// inside SQLite (about 10x cheaper than any other filter, which FerretDB
// evaluates after decoding every document: measured 23 ms against 254 ms on
// 5,000 versions), so the head is found with _id lookups only.
// Versions of a function are contiguous (version v is inserted only after v-1
// was read, and versions are deleted only with their tenant), so the head is
// found by probing _ids: from a version known to exist it gallops forward, then
// bisects. The starting point is the larger of known (a version the caller
// knows exists) and the remembered head. A remembered head written under
// trustUID (the caller's current tenant incarnation, whose versions are
// immutable and not deleted while it lives) is used without reading it again,
// so an uncontended append costs one probe; otherwise the start is verified.
func (s *Store) head(ctx context.Context, tenant, name, trustUID string, known int, full bool) (*FunctionVersion, error) {
	if checkName("tenant", tenant) != nil || checkName("function", name) != nil {
		return nil, nil // no such names are stored (their _ids would be ambiguous)
	}
	probe := func(v int) (*FunctionVersion, error) {
		var d versionDoc
		opts := options.FindOne()
		if !full {
			opts.SetProjection(bson.D{{Key: "version", Value: 1}, {Key: "deleted", Value: 1}, {Key: "tenant_uid", Value: 1}, {Key: "tenant", Value: 1}, {Key: "name", Value: 1}})
		}
		ok, err := findOne(ctx, s.versions, bson.D{{Key: "_id", Value: versionID(tenant, name, v)}}, &d, opts)
		if err != nil {
			return nil, fmt.Errorf("store: read current version of %s/%s: %w", tenant, name, err)
		}
		if !ok {
			return nil, nil
		}
		return &d.FunctionVersion, nil
	}

	// Invariant: version lo exists (lo == 0: none known) and loDoc is it.
	lo := 0
	var loDoc *FunctionVersion
	start := known
	if v, ok := s.heads.Load(headKey(tenant, name)); ok {
		h := v.(headHint)
		if !full && trustUID != "" && h.tenantUID == trustUID && h.version >= known {
			lo, loDoc = h.version, &FunctionVersion{Tenant: tenant, Name: name, Version: h.version, Deleted: h.deleted, TenantUID: h.tenantUID}
		} else {
			start = max(start, h.version)
		}
	}
	if loDoc == nil && start > 0 {
		d, err := probe(start)
		if err != nil {
			return nil, err
		}
		if d != nil {
			lo, loDoc = start, d
		}
	}
	// Gallop: find hi > lo that does not exist.
	hi := lo + 1
	for step := 1; ; step *= 2 {
		d, err := probe(hi)
		if err != nil {
			return nil, err
		}
		if d == nil {
			break
		}
		lo, loDoc = hi, d
		hi = lo + step
	}
	// Bisect (lo, hi).
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		d, err := probe(mid)
		if err != nil {
			return nil, err
		}
		if d != nil {
			lo, loDoc = mid, d
		} else {
			hi = mid
		}
	}
	if loDoc == nil {
		s.forgetHead(tenant, name)
		return nil, nil
	}
	s.rememberHead(loDoc)
	return loDoc, nil
}

// keyedLocks is a fixed set of context-aware mutexes picked by key hash.
type keyedLocks [64]chan struct{}

func newKeyedLocks() *keyedLocks {
	var k keyedLocks
	for i := range k {
		k[i] = make(chan struct{}, 1)
	}
	return &k
}

func (k *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	if k == nil { // tests: no local serialisation
		return func() {}, nil
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	c := k[h.Sum32()%uint32(len(k))]
	select {
	case c <- struct{}{}:
		return func() { <-c }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
