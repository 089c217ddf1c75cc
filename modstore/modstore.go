// Package modstore keeps npm modules in the shared store, so that each
// name@version is built once for the whole system: the build queue, the
// builders' leases on its jobs, the build results, and the built closures
// (a gzipped tar of node_modules) in a GridFS bucket.
//
// FerretDB applies updates atomically only within one connection but enforces
// unique indexes atomically across all of them, so every decision that two
// processes could race on is an insert guarded by a unique _id:
//
//	module_jobs     _id "name@version"            enqueue once, whoever asks
//	module_leases   _id "name@version#attempt"    one builder per attempt
//	modules         _id "name@version"            one final result
//
// Everything else is written by one writer only: a lease's expiry and outcome
// by its holder, a job's state by the holder of its current lease.
package modstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Collection names.
const (
	CollJobs     = "module_jobs"
	CollLeases   = "module_leases"
	CollResults  = "modules"
	BucketName   = "module_closures"
	collFiles    = BucketName + ".files"
	collChunks   = BucketName + ".chunks"
	defaultDB    = "wharf"
	dialTimeout  = 10 * time.Second
	findPageSize = 100
)

// Module and function statuses, as the API shows them.
const (
	StatusBuilding = "building"
	StatusReady    = "ready"
	StatusFailed   = "failed"
)

// Job states.
const (
	jobQueued = "queued"
	jobDone   = "done"
)

// Defaults of Options.
const (
	DefaultMaxAttempts = 3
	DefaultRetryDelay  = 10 * time.Second
	// DefaultRetryFailedAfter: a registry outage fails a module for this
	// long at least, not for good.
	DefaultRetryFailedAfter = time.Minute
	// ClockSkew is how much later than its expiry a lease is taken over:
	// builders on different machines compare one clock's expiry with another's.
	ClockSkew = 2 * time.Second
)

// ErrNotFound: the module was never asked for.
var ErrNotFound = errors.New("modstore: module not found")

// ErrLeaseLost: another builder took the job over (this lease expired).
var ErrLeaseLost = errors.New("modstore: lease lost to another builder")

// Options configure a Store. Zero fields take the defaults.
type Options struct {
	// MaxAttempts is how many builds of a module are tried before it is failed
	// for good; a build that fails for a reason in the module itself (npm says
	// the package does not exist) fails at once.
	MaxAttempts int
	// RetryDelay is the wait before retrying after a transient failure,
	// multiplied by the round's attempt number.
	RetryDelay time.Duration
	// RetryFailedAfter is how long a module whose last round failed for
	// transient reasons stays failed before a request may re-open it.
	RetryFailedAfter time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.RetryFailedAfter <= 0 {
		o.RetryFailedAfter = DefaultRetryFailedAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Store is the modules' part of the shared store. It is safe for concurrent use.
type Store struct {
	db                                   *mongo.Database
	jobs, leases, results, files, chunks *mongo.Collection
	opt                                  Options

	final sync.Map // "name@version" -> Result, for final results (immutable)
	owned *mongo.Client
}

// New uses db (the node's store database) and creates the indexes.
func New(ctx context.Context, db *mongo.Database, opt Options) (*Store, error) {
	s := &Store{
		db:      db,
		jobs:    db.Collection(CollJobs),
		leases:  db.Collection(CollLeases),
		results: db.Collection(CollResults),
		files:   db.Collection(collFiles),
		chunks:  db.Collection(collChunks),
		opt:     opt.withDefaults(),
	}
	if err := s.ensureIndexes(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Dial connects to the store at uri on its own (a standalone builder, which
// needs no secrets key and no other collection) and uses database name ("" is
// Wharf's default). Close releases the connection.
func Dial(ctx context.Context, uri, database string, opt Options) (*Store, error) {
	if database == "" {
		database = defaultDB
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetAppName("wharf-builder"))
	if err != nil {
		return nil, fmt.Errorf("modstore: connecting: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := client.Ping(pctx, nil); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("modstore: ping %s: %w", redact(uri), err)
	}
	s, err := New(ctx, client.Database(database), opt)
	if err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	s.owned = client
	return s, nil
}

// Close disconnects a Store made by Dial; for one made by New it does nothing.
func (s *Store) Close(ctx context.Context) error {
	if s.owned == nil {
		return nil
	}
	if err := s.owned.Disconnect(ctx); err != nil && !errors.Is(err, mongo.ErrClientDisconnected) {
		return fmt.Errorf("modstore: disconnecting: %w", err)
	}
	return nil
}

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.Client().Ping(ctx, nil); err != nil {
		return fmt.Errorf("modstore: ping: %w", err)
	}
	return nil
}

// MaxAttempts is the configured attempt budget of a module.
func (s *Store) MaxAttempts() int { return s.opt.MaxAttempts }

// ensureIndexes creates the secondary indexes, one per command (FerretDB
// 1.24 fails a createIndexes naming several existing ones). Correctness rests
// on _id alone; these help MongoDB answer the queue scan and are the GridFS
// standard index, so mongofiles and drivers can read the bucket.
func (s *Store) ensureIndexes(ctx context.Context) error {
	for _, ix := range []struct {
		c *mongo.Collection
		m mongo.IndexModel
	}{
		{s.jobs, mongo.IndexModel{Keys: bson.D{{Key: "state", Value: 1}, {Key: "created_at", Value: 1}}, Options: options.Index().SetName("state_created")}},
		{s.leases, mongo.IndexModel{Keys: bson.D{{Key: "job", Value: 1}}, Options: options.Index().SetName("job")}},
		{s.files, mongo.IndexModel{Keys: bson.D{{Key: "filename", Value: 1}, {Key: "uploadDate", Value: 1}}, Options: options.Index().SetName("filename_1_uploadDate_1")}},
		{s.chunks, mongo.IndexModel{Keys: bson.D{{Key: "files_id", Value: 1}, {Key: "n", Value: 1}}, Options: options.Index().SetName("files_id_1_n_1").SetUnique(true)}},
	} {
		if _, err := ix.c.Indexes().CreateOne(ctx, ix.m); err != nil {
			return fmt.Errorf("modstore: creating index on %s: %w", ix.c.Name(), err)
		}
	}
	return nil
}

func (s *Store) now() time.Time { return s.opt.Now().UTC().Truncate(time.Millisecond) }

// findByID decodes the document with _id id into out; (false, nil) when none.
func findByID(ctx context.Context, c *mongo.Collection, id any, out any) (bool, error) {
	err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(out)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	return err == nil, err
}

// redact drops credentials from a URI before it reaches a message.
func redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparsable URI)"
	}
	return u.Redacted()
}
