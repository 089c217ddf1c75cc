// Package storetest gives tests a real store: an embedded FerretDB in the
// test's temporary directory and a client of it, both closed at cleanup.
package storetest

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/wharfhq/wharf/store"
)

// Key is the secrets key of stores opened by New.
var Key = bytes.Repeat([]byte{7}, 32)

// Start starts an embedded store, stopped at cleanup, and returns its URI
// for tests that open their own clients. Its log goes to logger (nil: none).
func Start(t testing.TB, logger *slog.Logger) string {
	t.Helper()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := store.StartEmbedded(ctx, t.TempDir(), "127.0.0.1:0", logger)
	if err != nil {
		t.Fatalf("start embedded store: %v", err)
	}
	t.Cleanup(e.Close)
	return e.URI()
}

// New starts an embedded store and connects to it with at most poolSize
// connections (0: the driver's default).
func New(t testing.TB, poolSize uint64) *store.Store {
	t.Helper()
	uri := Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Connect(ctx, uri, store.Options{MaxPoolSize: poolSize, SecretsKey: Key})
	if err != nil {
		t.Fatalf("connect to the store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return st
}
