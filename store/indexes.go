package store

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Index layout. The unique indexes carry correctness (FerretDB enforces them
// atomically across connections); the others only help MongoDB, since FerretDB
// scans collections whatever the filter (see head).
//
//	tenants            _id = tenant name
//	tokens             _id = random id; unique {hash}; {tenant}
//	function_versions  _id = "<tenant>/<name>/<version>"; unique {tenant, name, version}
//	settings           _id = setting name ("admin_token")
//	logs               _id = random; {tenant, at}
//	storage            _id = "<tenant>/<function>/<rev>"; unique {tenant, function, rev}
func indexModels() map[string][]mongo.IndexModel {
	return map[string][]mongo.IndexModel{
		CollTokens: {
			{Keys: bson.D{{Key: "hash", Value: 1}}, Options: options.Index().SetName("hash_unique").SetUnique(true)},
			{Keys: bson.D{{Key: "tenant", Value: 1}}, Options: options.Index().SetName("tenant")},
		},
		CollLogs: {
			{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "at", Value: -1}}, Options: options.Index().SetName("tenant_at")},
		},
		CollStorage: {
			{
				Keys:    bson.D{{Key: "tenant", Value: 1}, {Key: "function", Value: 1}, {Key: "rev", Value: 1}},
				Options: options.Index().SetName("tenant_function_rev_unique").SetUnique(true),
			},
		},
		CollFunctionVersions: {
			{
				Keys:    bson.D{{Key: "tenant", Value: 1}, {Key: "name", Value: 1}, {Key: "version", Value: 1}},
				Options: options.Index().SetName("tenant_name_version_unique").SetUnique(true),
			},
		},
	}
}

// ensureIndexes creates the indexes, one per command: FerretDB 1.24 panics
// (and drops the connection) on a createIndexes command naming two or more
// indexes that already exist, which every Connect after the first would send.
// Creating an identical existing index is a no-op on MongoDB and FerretDB.
func (s *Store) ensureIndexes(ctx context.Context) error {
	models := indexModels()
	for _, coll := range slices.Sorted(maps.Keys(models)) {
		for _, m := range models[coll] {
			if _, err := s.db.Collection(coll).Indexes().CreateOne(ctx, m); err != nil {
				return fmt.Errorf("store: creating indexes on %s: %w", coll, err)
			}
		}
	}
	return nil
}
