package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConnectRejectsBadKey(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	for _, key := range [][]byte{nil, make([]byte, 16), make([]byte, 33)} {
		s, err := Connect(testCtx(t), e.URI(), Options{SecretsKey: key})
		if err == nil {
			_ = s.Close(context.Background())
			t.Fatalf("Connect with a %d-byte key succeeded", len(key))
		}
	}
}

func TestConnectErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	// Nothing listens on port 1.
	if s, err := Connect(ctx, "mongodb://127.0.0.1:1/?connectTimeoutMS=100", Options{SecretsKey: testKey}); err == nil {
		_ = s.Close(context.Background())
		t.Fatal("Connect to a closed port succeeded")
	}
	if s, err := Connect(testCtx(t), "http://not-mongo", Options{SecretsKey: testKey}); err == nil {
		_ = s.Close(context.Background())
		t.Fatal("Connect with a bad URI succeeded")
	}
}

func TestConnectDefaultsAndIndexes(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	s := connect(t, e.URI(), Options{})
	if got := s.Database().Name(); got != DefaultDatabase {
		t.Fatalf("database %q, want %q", got, DefaultDatabase)
	}
	// Connecting again (another node, a restart) recreates nothing and does not fail.
	s2 := connect(t, e.URI(), Options{MaxPoolSize: 1})
	connect(t, e.URI(), Options{MaxPoolSize: 1})

	ctx := testCtx(t)
	for coll, want := range map[string][]string{
		CollTokens:           {"hash_unique", "tenant"},
		CollFunctionVersions: {"tenant_name_version_unique"},
	} {
		specs, err := s2.db.Collection(coll).Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, sp := range specs {
			got[sp.Name] = sp.Unique != nil && *sp.Unique
		}
		for _, name := range want {
			unique, ok := got[name]
			if !ok {
				t.Errorf("%s: index %s missing (have %v)", coll, name, got)
			}
			if strings.HasSuffix(name, "_unique") != unique {
				t.Errorf("%s: index %s unique=%v", coll, name, unique)
			}
		}
		if len(specs) != len(want)+1 { // + _id_
			t.Errorf("%s: %d indexes, want %d", coll, len(specs), len(want)+1)
		}
	}
}

func TestDatabaseOption(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	a := connect(t, e.URI(), Options{Database: "a"})
	b := connect(t, e.URI(), Options{Database: "b"})
	ctx := testCtx(t)
	if _, err := a.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetTenant(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tenant visible in another database: %v", err)
	}
}

func TestPingAndClose(t *testing.T) {
	t.Parallel() // stopping a server with a client connected takes FerretDB's 3 s grace period
	s, e := newTestStore(t)
	ctx := testCtx(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
	// Ping notices a stopped server.
	s2 := connect(t, e.URI(), Options{})
	e.Close()
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := s2.Ping(pctx); err == nil {
		t.Fatal("Ping of a stopped server succeeded")
	}
}

func TestDriverErrorsAreWrapped(t *testing.T) {
	s, _ := newTestStore(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	calls := map[string]func() error{
		"GetTenant":   func() error { _, err := s.GetTenant(ctx, "x"); return err },
		"ListTenants": func() error { _, err := s.ListTenants(ctx); return err },
		"GetFunction": func() error { _, err := s.GetFunction(ctx, "x", "f"); return err },
		"ListFunctions": func() error {
			_, err := s.ListFunctions(ctx, "x")
			return err
		},
		"Authenticate": func() error { _, err := s.Authenticate(ctx, "wht_x"); return err },
		"RevokeToken":  func() error { return s.RevokeToken(ctx, "x", "y") },
	}
	for name, call := range calls {
		err := call()
		if err == nil || errors.Is(err, ErrNotFound) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v (want a wrapped context.Canceled)", name, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "store: ") {
			t.Errorf("%s: error %q lacks context", name, err)
		}
	}
}
