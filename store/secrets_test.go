package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

const plaintextSecret = "s3cr3t-plaintext"

// The plaintext of a function secret reaches no document of any collection
// (nor the database files), while GetFunction returns it.
func TestSecretsNeverStoredInPlaintext(t *testing.T) {
	s, e := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	if _, err := s.EnsureAdminToken(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateToken(ctx, "acme", "ci"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "hook", Code: "module.exports = cb => cb()",
		Secrets: map[string]string{"API_KEY": plaintextSecret, "OTHER": "x"}})
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "hook", Code: "v2"})
	if _, err := s.Rollback(ctx, "acme", "hook", 1); err != nil {
		t.Fatal(err)
	}

	fv, err := s.GetFunction(ctx, "acme", "hook")
	if err != nil {
		t.Fatal(err)
	}
	if fv.Secrets["API_KEY"] != plaintextSecret {
		t.Fatalf("GetFunction secrets = %v", fv.Secrets)
	}

	colls, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{CollTenants, CollTokens, CollFunctionVersions, CollSettings} {
		if !strings.Contains(strings.Join(colls, ","), want) {
			t.Fatalf("collection %s missing from %v", want, colls)
		}
	}
	docs := 0
	sealedSeen := 0
	for _, coll := range colls {
		cur, err := s.db.Collection(coll).Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		for cur.Next(ctx) {
			docs++
			raw := cur.Current
			if bytes.Contains(raw, []byte(plaintextSecret)) {
				t.Errorf("%s: document holds the plaintext secret: %s", coll, raw)
			}
			if _, err := raw.LookupErr("secrets_sealed"); err == nil {
				sealedSeen++
			}
		}
		if err := cur.Err(); err != nil {
			t.Fatal(err)
		}
		cur.Close(ctx)
	}
	if docs < 6 || sealedSeen != 2 { // tenant, token, admin, 3 versions; v1 and v3 carry secrets
		t.Fatalf("scanned %d documents, %d with sealed secrets: the check is vacuous", docs, sealedSeen)
	}

	// Nor the database files.
	err = filepath.WalkDir(e.DataDir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(plaintextSecret)) {
			t.Errorf("file %s holds the plaintext secret", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Sealed secrets are bound to their tenant and function: copied into another
// function's document they do not open, and the error does not reveal them.
func TestSealedSecretsBoundToFunction(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "evil")
	src := mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "hook", Secrets: map[string]string{"K": plaintextSecret}})
	mustPut(t, s, FunctionSpec{Tenant: "evil", Name: "hook"})
	stolen := FunctionVersion{Tenant: "evil", Name: "hook", Version: 2, SecretNames: []string{"K"}, SecretsSealed: src.SecretsSealed}
	if _, err := s.versions.InsertOne(ctx, versionDoc{ID: versionID("evil", "hook", 2), FunctionVersion: stolen}); err != nil {
		t.Fatal(err)
	}
	fv, err := s.GetFunction(ctx, "evil", "hook")
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("GetFunction with a foreign sealed value = %+v, %v; want an error", fv, err)
	}
	if strings.Contains(err.Error(), plaintextSecret) {
		t.Fatalf("error reveals the secret: %v", err)
	}
}

func TestSecretsWrongKey(t *testing.T) {
	s, e := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "hook", Secrets: map[string]string{"K": plaintextSecret}})
	other := connect(t, e.URI(), Options{SecretsKey: bytes.Repeat([]byte{7}, 32)})
	_, err := other.GetFunction(ctx, "acme", "hook")
	if err == nil || errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), plaintextSecret) {
		t.Fatalf("GetFunction under the wrong key: %v", err)
	}
	if _, err := other.GetVersion(ctx, "acme", "hook", 1); err == nil {
		t.Fatal("GetVersion under the wrong key succeeded")
	}
	if _, err := other.Rollback(ctx, "acme", "hook", 1); err == nil {
		t.Fatal("Rollback under the wrong key succeeded")
	}
	// Listing needs no key.
	if fns, err := other.ListFunctions(ctx, "acme"); err != nil || len(fns) != 1 {
		t.Fatalf("ListFunctions under the wrong key = %v, %v", fns, err)
	}
}

// A sealed value that opens but is not a JSON object yields an error that does not quote it.
func TestMalformedSecretsErrorDoesNotLeak(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	sealed, err := s.box.SealWithAD([]byte(`{"K": `+plaintextSecret+`}`), secretsAD("acme", "hook"))
	if err != nil {
		t.Fatal(err)
	}
	doc := versionDoc{ID: versionID("acme", "hook", 1), FunctionVersion: FunctionVersion{Tenant: "acme", Name: "hook", Version: 1, SecretsSealed: sealed}}
	if _, err := s.versions.InsertOne(ctx, doc); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetFunction(ctx, "acme", "hook")
	if err == nil || strings.Contains(err.Error(), plaintextSecret) {
		t.Fatalf("GetFunction of malformed secrets: %v", err)
	}
}
