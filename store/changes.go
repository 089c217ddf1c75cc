package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// CollChanges is the change feed nodes poll to invalidate their caches:
// FerretDB has no change streams, so every change that a node may have
// cached is appended here with the next sequence number.
const CollChanges = "changes"

// Change kinds.
const (
	ChangeFunction = "function" // a function's current version changed (put, delete, rollback)
	ChangeTenant   = "tenant"   // a tenant was deleted
	ChangeToken    = "token"    // a token was revoked
)

// Change is one entry of the change feed.
type Change struct {
	Seq    int64     `bson:"_id"`
	Kind   string    `bson:"kind"`
	Tenant string    `bson:"tenant"`
	Name   string    `bson:"name,omitempty"`
	At     time.Time `bson:"at"`
}

// AppendChange records a change with the next sequence number (the Store
// remembers the last one it saw, so an append usually wins at once). The sequence
// is claimed by an insert on _id (unique), so concurrent writers on any node
// get distinct, gap-free numbers.
func (s *Store) AppendChange(ctx context.Context, kind, tenant, name string) (int64, error) {
	coll := s.db.Collection(CollChanges)
	next := s.changeHint.Load() + 1
	for attempt := 0; attempt < maxAppendAttempts; attempt++ {
		_, err := coll.InsertOne(ctx, Change{Seq: next, Kind: kind, Tenant: tenant, Name: name, At: time.Now().UTC()})
		if err == nil {
			s.changeHint.Store(next)
			return next, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return 0, fmt.Errorf("store: append change: %w", err)
		}
		last, err := s.LastChange(ctx)
		if err != nil {
			return 0, err
		}
		next = last + 1
	}
	return 0, fmt.Errorf("store: append change: %w", ErrConflict)
}

// LastChange returns the highest sequence number in the feed (0 when empty).
func (s *Store) LastChange(ctx context.Context) (int64, error) {
	var c Change
	err := s.db.Collection(CollChanges).FindOne(ctx, bson.D{},
		options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}}).SetProjection(bson.D{{Key: "_id", Value: 1}})).Decode(&c)
	if err == mongo.ErrNoDocuments {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: last change: %w", err)
	}
	return c.Seq, nil
}

// ChangesSince returns the changes after seq, oldest first, at most limit.
func (s *Store) ChangesSince(ctx context.Context, seq int64, limit int) ([]Change, error) {
	cur, err := s.db.Collection(CollChanges).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: seq}}}},
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("store: changes since %d: %w", seq, err)
	}
	var out []Change
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("store: changes since %d: %w", seq, err)
	}
	return out, nil
}

// TrimChanges deletes changes recorded before cutoff, keeping the newest one
// so the sequence never restarts. Nodes that fell further behind than the
// retained window notice the gap and drop their whole cache.
func (s *Store) TrimChanges(ctx context.Context, cutoff time.Time) (int64, error) {
	last, err := s.LastChange(ctx)
	if err != nil || last == 0 {
		return 0, err
	}
	res, err := s.db.Collection(CollChanges).DeleteMany(ctx, bson.D{
		{Key: "at", Value: bson.D{{Key: "$lt", Value: cutoff}}},
		{Key: "_id", Value: bson.D{{Key: "$lt", Value: last}}},
	})
	if err != nil {
		return 0, fmt.Errorf("store: trim changes: %w", err)
	}
	return res.DeletedCount, nil
}
