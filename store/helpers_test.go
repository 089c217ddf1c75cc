package store

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// testKey is the secrets key of test stores.
var testKey = bytes.Repeat([]byte{0x42}, 32)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testCtx(t *testing.T) context.Context { return testCtxFor(t, 60*time.Second) }

// testCtxFor bounds a test that does a lot of store work: under -race the
// embedded server runs instrumented in this process, on a possibly busy machine.
func testCtxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// startEmbedded starts an embedded server on dir and stops it at cleanup.
func startEmbedded(t *testing.T, dir string) *Embedded {
	t.Helper()
	e, err := StartEmbedded(testCtx(t), dir, "127.0.0.1:0", testLogger(t))
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// connect opens a Store on uri and closes it at cleanup (before the server stops,
// since cleanups run last-in first-out).
func connect(t *testing.T, uri string, opt Options) *Store {
	t.Helper()
	if opt.SecretsKey == nil {
		opt.SecretsKey = testKey
	}
	s, err := Connect(testCtx(t), uri, opt)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newTestStore starts a fresh embedded server and connects to it.
func newTestStore(t *testing.T) (*Store, *Embedded) {
	t.Helper()
	e := startEmbedded(t, t.TempDir())
	return connect(t, e.URI(), Options{MaxPoolSize: 1}), e
}

func mustTenant(t *testing.T, s *Store, name string) Tenant {
	t.Helper()
	tn, err := s.CreateTenant(testCtx(t), name)
	if err != nil {
		t.Fatalf("CreateTenant(%q): %v", name, err)
	}
	return tn
}

func mustPut(t *testing.T, s *Store, spec FunctionSpec) FunctionVersion {
	t.Helper()
	fv, _, err := s.PutFunction(testCtx(t), spec)
	if err != nil {
		t.Fatalf("PutFunction(%s/%s): %v", spec.Tenant, spec.Name, err)
	}
	return fv
}

// count returns the number of documents matching filter in a collection.
func count(t *testing.T, s *Store, coll string, filter bson.D) int64 {
	t.Helper()
	n, err := s.db.Collection(coll).CountDocuments(testCtx(t), filter)
	if err != nil {
		t.Fatalf("CountDocuments(%s): %v", coll, err)
	}
	return n
}
