// Package store keeps Wharf's state (tenants, tokens, function versions) in a
// MongoDB-wire database: MongoDB, or FerretDB embedded in this process.
//
// FerretDB does not make updates atomic across connections and has no
// transactions, so every compare-and-set here is an insert guarded by a unique
// index (append-only documents), which is correct on MongoDB as well.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/wharfhq/wharf/secretbox"
)

// DefaultDatabase is the database name used when Options.Database is empty.
const DefaultDatabase = "wharf"

// Collection names.
const (
	CollTenants          = "tenants"
	CollTokens           = "tokens"
	CollFunctionVersions = "function_versions"
	CollSettings         = "settings"
)

// Options configure Connect.
type Options struct {
	// Database is the database name; default "wharf".
	Database string
	// MaxPoolSize limits the driver's connection pool; 0 keeps the driver default.
	MaxPoolSize uint64
	// SecretsKey is the 32-byte key function secrets are sealed with. Required.
	SecretsKey []byte
	// SelectionTimeout bounds how long an operation waits for a reachable
	// server (default 3 s), so that during an outage management calls fail
	// fast with 503 instead of hanging for the driver's 30 s default. A
	// serverSelectionTimeoutMS in the URI wins.
	SelectionTimeout time.Duration
}

// Store is a connected client of the store. It is safe for concurrent use.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	box    *secretbox.Box

	tenants, tokens, versions, settings *mongo.Collection

	maxBackoff time.Duration // cap of the jittered wait between append attempts
	heads      sync.Map      // "tenant/name" -> headHint: the last head seen
	// "tenant/function" -> int64: the newest storage revision last seen
	storageHints    sync.Map
	storagePruneAge time.Duration // storagePruneAge; tests lower it
	locks           *keyedLocks   // serialise this process's writers of one function
	changeHint      atomic.Int64  // the last change sequence this Store saw
}

// Connect connects to the database at uri, checks it answers, and creates the
// indexes Wharf needs (idempotent).
func Connect(ctx context.Context, uri string, opt Options) (*Store, error) {
	box, err := secretbox.New(opt.SecretsKey)
	if err != nil {
		return nil, fmt.Errorf("store: secrets key: %w", err)
	}
	if opt.Database == "" {
		opt.Database = DefaultDatabase
	}
	co := options.Client().ApplyURI(uri).SetAppName("wharf")
	if !strings.Contains(strings.ToLower(uri), "serverselectiontimeoutms") {
		if opt.SelectionTimeout <= 0 {
			opt.SelectionTimeout = 3 * time.Second
		}
		co.SetServerSelectionTimeout(opt.SelectionTimeout).SetConnectTimeout(opt.SelectionTimeout)
	}
	if opt.MaxPoolSize > 0 {
		co.SetMaxPoolSize(opt.MaxPoolSize)
	}
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("store: connecting: %w", err)
	}
	db := client.Database(opt.Database)
	s := &Store{
		client:   client,
		db:       db,
		box:      box,
		tenants:  db.Collection(CollTenants),
		tokens:   db.Collection(CollTokens),
		versions: db.Collection(CollFunctionVersions),
		settings: db.Collection(CollSettings),

		maxBackoff:      defaultMaxBackoff,
		storagePruneAge: storagePruneAge,
		locks:           newKeyedLocks(),
	}
	if err := s.Ping(ctx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

// Close disconnects from the database. Closing again is a no-op.
func (s *Store) Close(ctx context.Context) error {
	if err := s.client.Disconnect(ctx); err != nil && !errors.Is(err, mongo.ErrClientDisconnected) {
		return fmt.Errorf("store: disconnecting: %w", err)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Database is the underlying database, for other packages' own collections.
func (s *Store) Database() *mongo.Database { return s.db }

// now is the time stamped on documents, at the precision BSON keeps, so a
// value returned by a write equals the value read back.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return hex.EncodeToString(b)
}

// findOne runs FindOne and decodes into out; (false, nil) when nothing matched.
func findOne(ctx context.Context, c *mongo.Collection, filter any, out any, opts ...options.Lister[options.FindOneOptions]) (bool, error) {
	err := c.FindOne(ctx, filter, opts...).Decode(out)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}
