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

// New starts an embedded store and connects to it with at most poolSize
// connections (0: the driver's default).
func New(t testing.TB, poolSize uint64) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := store.StartEmbedded(ctx, t.TempDir(), "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start embedded store: %v", err)
	}
	t.Cleanup(e.Close)
	st, err := store.Connect(ctx, e.URI(), store.Options{MaxPoolSize: poolSize, SecretsKey: Key})
	if err != nil {
		t.Fatalf("connect to the store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return st
}
