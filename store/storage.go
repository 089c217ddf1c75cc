package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// CollStorage holds webtask storage: one JSON document per function, kept as
// append-only revisions. Revision r+1 is an insert guarded by the unique
// index {tenant, function, rev} (and the _id), so of two writers that read
// revision r exactly one can write next, on every node and connection.
const CollStorage = "storage"

// MaxStorageBytes is the largest storage document: 500 KB of compact JSON.
const MaxStorageBytes = 500 * 1024

// Storage retention. Only the newest revision keeps its data (a write strips
// the one before it); revisions below the newest minus storageKeep that are
// older than storagePruneAge are deleted every storagePruneEvery revisions.
// The age bound keeps the guard sound: a writer checks "expected == newest"
// and then inserts expected+1, all within storageOpTimeout; pruning could only
// let that insert land below newer revisions if expected+1 had been written
// and pruned in between, and nothing younger than storagePruneAge is pruned.
const (
	storageKeep       = 16
	storagePruneEvery = 16
	storagePruneAge   = 2 * time.Minute
	storageOpTimeout  = 20 * time.Second
)

// Storage is one revision of a function's storage document.
type Storage struct {
	// Rev is the revision: 0 when nothing was ever stored. A delete is a
	// revision too, so a document deleted after a read still conflicts.
	Rev int64 `json:"rev"`
	// Data is the document as compact JSON; nil when there is none (never
	// stored, or deleted).
	Data json.RawMessage `json:"data,omitempty"`
}

// ErrStorageConflict is wrapped by a *StorageConflict.
var ErrStorageConflict = errors.New("store: storage changed since it was read")

// ErrStorageTooLarge is returned for a document over MaxStorageBytes.
var ErrStorageTooLarge = fmt.Errorf("store: storage document over %d bytes", MaxStorageBytes)

// ErrStorageInvalid is returned for data that is not one JSON value.
var ErrStorageInvalid = errors.New("store: storage data is not a JSON value")

// StorageConflict is a conditional write that lost: Current is what is stored.
type StorageConflict struct{ Current Storage }

func (e *StorageConflict) Error() string {
	return fmt.Sprintf("%v (now at revision %d)", ErrStorageConflict, e.Current.Rev)
}

func (e *StorageConflict) Unwrap() error { return ErrStorageConflict }

// StorageWrite is a write of a function's storage.
type StorageWrite struct {
	// Expected is the revision the writer last read (0: nothing stored);
	// the write fails with a *StorageConflict unless it is still the newest.
	Expected int64
	// Force writes whatever is stored.
	Force bool
	// Data is the new document; nil (or JSON null) deletes it.
	Data json.RawMessage
}

type storageDoc struct {
	ID       string    `bson:"_id"`
	Tenant   string    `bson:"tenant"`
	Function string    `bson:"function"`
	Rev      int64     `bson:"rev"`
	Data     string    `bson:"data,omitempty"` // compact JSON; "" when deleted or stripped
	Deleted  bool      `bson:"deleted,omitempty"`
	At       time.Time `bson:"at"`
}

// stripped reports a revision whose data was removed because a newer one exists.
func (d *storageDoc) stripped() bool { return d.Data == "" && !d.Deleted }

func (d *storageDoc) storage() Storage {
	st := Storage{Rev: d.Rev}
	if !d.Deleted && d.Data != "" {
		st.Data = json.RawMessage(d.Data)
	}
	return st
}

func (s *Store) storage() *mongo.Collection { return s.db.Collection(CollStorage) }

func storageID(tenant, fn string, rev int64) string {
	return tenant + "/" + fn + "/" + strconv.FormatInt(rev, 10)
}

func storageFilter(tenant, fn string) bson.D {
	return bson.D{{Key: "tenant", Value: tenant}, {Key: "function", Value: fn}}
}

// NormalizeStorage checks data and returns it as compact JSON, nil for a
// delete (nil, empty or JSON null).
func NormalizeStorage(data json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	// Stored as a BSON string, which must be UTF-8 (json.Valid lets invalid
	// UTF-8 through).
	if err := json.Compact(&b, data); err != nil || !json.Valid(data) || !utf8.Valid(data) {
		return nil, ErrStorageInvalid
	}
	if b.String() == "null" {
		return nil, nil
	}
	if b.Len() > MaxStorageBytes {
		return nil, fmt.Errorf("%w (%d bytes)", ErrStorageTooLarge, b.Len())
	}
	return b.Bytes(), nil
}

// GetStorage returns the newest revision of a function's storage (Rev 0 and
// no Data when nothing was ever stored).
func (s *Store) GetStorage(ctx context.Context, tenant, fn string) (Storage, error) {
	if err := checkStorageNames(tenant, fn); err != nil {
		return Storage{}, err
	}
	d, err := s.storageHead(ctx, tenant, fn)
	if err != nil || d == nil {
		return Storage{}, err
	}
	return d.storage(), nil
}

// SetStorage writes the next revision of a function's storage and returns it.
// Unless w.Force, it fails with a *StorageConflict when the newest revision is
// not w.Expected. ErrStorageTooLarge and ErrStorageInvalid change nothing.
func (s *Store) SetStorage(ctx context.Context, tenant, fn string, w StorageWrite) (Storage, error) {
	if err := checkStorageNames(tenant, fn); err != nil {
		return Storage{}, err
	}
	data, err := NormalizeStorage(w.Data)
	if err != nil {
		return Storage{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, storageOpTimeout)
	defer cancel()
	// Writers of one document in this process take turns: collisions are then
	// between processes only (correctness is the unique index's).
	unlock, err := s.locks.lock(ctx, "storage\x00"+tenant+"/"+fn)
	if err != nil {
		return Storage{}, fmt.Errorf("store: write storage of %s/%s: %w", tenant, fn, err)
	}
	defer unlock()

	for attempt := range maxAppendAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt, s.maxBackoff); err != nil {
				return Storage{}, fmt.Errorf("store: write storage of %s/%s: %w", tenant, fn, err)
			}
		}
		head, err := s.storageHead(ctx, tenant, fn)
		if err != nil {
			return Storage{}, err
		}
		cur := Storage{}
		if head != nil {
			cur = head.storage()
		}
		if !w.Force && cur.Rev != w.Expected {
			return Storage{}, &StorageConflict{Current: cur}
		}
		next := storageDoc{ID: storageID(tenant, fn, cur.Rev+1), Tenant: tenant, Function: fn, Rev: cur.Rev + 1,
			Data: string(data), Deleted: data == nil, At: now()}
		_, err = s.storage().InsertOne(ctx, next)
		if mongo.IsDuplicateKeyError(err) {
			if w.Force {
				continue // another writer took this revision; write after it
			}
			latest, err := s.storageHead(ctx, tenant, fn)
			if err != nil {
				return Storage{}, err
			}
			conflict := &StorageConflict{}
			if latest != nil {
				conflict.Current = latest.storage()
			}
			return Storage{}, conflict
		}
		if err != nil {
			return Storage{}, fmt.Errorf("store: write storage revision %d of %s/%s: %w", next.Rev, tenant, fn, err)
		}
		s.storageHints.Store(headKey(tenant, fn), next.Rev)
		s.retireStorage(ctx, tenant, fn, cur.Rev, next.Rev)
		return next.storage(), nil
	}
	return Storage{}, fmt.Errorf("store: write storage of %s/%s: %w", tenant, fn, ErrConflict)
}

// retireStorage strips the data of revision prev (newest no more) and now and
// then deletes old revisions. Failures only leave more behind for the next
// pass, so they are not reported.
func (s *Store) retireStorage(ctx context.Context, tenant, fn string, prev, rev int64) {
	if prev > 0 {
		_, _ = s.storage().UpdateOne(ctx, bson.D{{Key: "_id", Value: storageID(tenant, fn, prev)}},
			bson.D{{Key: "$unset", Value: bson.D{{Key: "data", Value: ""}}}})
	}
	if rev%storagePruneEvery == 0 && rev > storageKeep {
		filter := append(storageFilter(tenant, fn),
			bson.E{Key: "rev", Value: bson.D{{Key: "$lt", Value: rev - storageKeep}}},
			bson.E{Key: "at", Value: bson.D{{Key: "$lt", Value: now().Add(-s.storagePruneAge)}}})
		_, _ = s.storage().DeleteMany(ctx, filter)
	}
}

// DeleteStorage removes every revision of a function's storage.
func (s *Store) DeleteStorage(ctx context.Context, tenant, fn string) error {
	s.storageHints.Delete(headKey(tenant, fn))
	if _, err := s.storage().DeleteMany(ctx, storageFilter(tenant, fn)); err != nil {
		return fmt.Errorf("store: delete storage of %s/%s: %w", tenant, fn, err)
	}
	return nil
}

// storageHead returns the newest revision with its data, or nil when there is
// none. Like head, it finds it with _id lookups (FerretDB evaluates only those
// inside SQLite): from the revision this Store last saw it walks forward; only
// without one, or when that one was pruned, does it query by function.
func (s *Store) storageHead(ctx context.Context, tenant, fn string) (*storageDoc, error) {
	probe := func(rev int64, full bool) (*storageDoc, error) {
		var d storageDoc
		opts := options.FindOne()
		if !full {
			opts.SetProjection(bson.D{{Key: "rev", Value: 1}})
		}
		ok, err := findOne(ctx, s.storage(), bson.D{{Key: "_id", Value: storageID(tenant, fn, rev)}}, &d, opts)
		if err != nil {
			return nil, fmt.Errorf("store: read storage of %s/%s: %w", tenant, fn, err)
		}
		if !ok {
			return nil, nil
		}
		return &d, nil
	}
	key := headKey(tenant, fn)
	for range maxAppendAttempts {
		var start int64
		if v, ok := s.storageHints.Load(key); ok {
			start = v.(int64)
			if d, err := probe(start, false); err != nil {
				return nil, err
			} else if d == nil {
				start = 0 // pruned, or the storage was deleted
			}
		}
		if start == 0 {
			var d storageDoc
			ok, err := findOne(ctx, s.storage(), storageFilter(tenant, fn), &d, options.FindOne().
				SetSort(bson.D{{Key: "rev", Value: -1}}).SetProjection(bson.D{{Key: "rev", Value: 1}}))
			if err != nil {
				return nil, fmt.Errorf("store: read storage of %s/%s: %w", tenant, fn, err)
			}
			if !ok {
				s.storageHints.Delete(key)
				return nil, nil
			}
			start = d.Rev
		}
		// Revisions are contiguous upwards from any kept one (pruning deletes
		// only below): gallop forward, then bisect.
		lo, hi := start, start+1
		for step := int64(1); ; step *= 2 {
			d, err := probe(hi, false)
			if err != nil {
				return nil, err
			}
			if d == nil {
				break
			}
			lo, hi = hi, hi+step
		}
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			d, err := probe(mid, false)
			if err != nil {
				return nil, err
			}
			if d != nil {
				lo = mid
			} else {
				hi = mid
			}
		}
		rev := lo
		d, err := probe(rev, true)
		if err != nil {
			return nil, err
		}
		if d == nil || d.stripped() {
			// Pruned, or newer than rev was written since the walk: again.
			s.storageHints.Store(key, rev)
			continue
		}
		s.storageHints.Store(key, rev)
		return d, nil
	}
	return nil, fmt.Errorf("store: read storage of %s/%s: %w", tenant, fn, ErrConflict)
}

func checkStorageNames(tenant, fn string) error {
	if err := checkName("tenant", tenant); err != nil {
		return err
	}
	return checkName("function", fn)
}
