package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func mustGetStorage(t *testing.T, s *Store, tenant, fn string) Storage {
	t.Helper()
	st, err := s.GetStorage(testCtx(t), tenant, fn)
	if err != nil {
		t.Fatalf("GetStorage(%s/%s): %v", tenant, fn, err)
	}
	return st
}

func mustSetStorage(t *testing.T, s *Store, tenant, fn string, w StorageWrite) Storage {
	t.Helper()
	st, err := s.SetStorage(testCtx(t), tenant, fn, w)
	if err != nil {
		t.Fatalf("SetStorage(%s/%s, %+v): %v", tenant, fn, w, err)
	}
	return st
}

func TestStorageRules(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)

	if got := mustGetStorage(t, s, "acme", "fn"); got.Rev != 0 || got.Data != nil {
		t.Fatalf("empty storage = %+v, want rev 0 and no data", got)
	}
	// Whitespace is compacted; the JSON text is kept as given otherwise.
	w1 := mustSetStorage(t, s, "acme", "fn", StorageWrite{Expected: 0, Data: json.RawMessage(` {"n": 1, "z": 1.50} `)})
	if w1.Rev != 1 || string(w1.Data) != `{"n":1,"z":1.50}` {
		t.Fatalf("first set = %+v", w1)
	}
	if got := mustGetStorage(t, s, "acme", "fn"); got.Rev != 1 || string(got.Data) != `{"n":1,"z":1.50}` {
		t.Fatalf("get after set = %+v", got)
	}

	// A writer that read revision 0 (nothing) loses, and learns what is there.
	_, err := s.SetStorage(ctx, "acme", "fn", StorageWrite{Expected: 0, Data: json.RawMessage(`{"n":99}`)})
	var conflict *StorageConflict
	if !errors.As(err, &conflict) || !errors.Is(err, ErrStorageConflict) {
		t.Fatalf("stale set: err = %v, want a StorageConflict", err)
	}
	if conflict.Current.Rev != 1 || string(conflict.Current.Data) != `{"n":1,"z":1.50}` {
		t.Fatalf("conflict carries %+v", conflict.Current)
	}
	// A writer from the future (a revision never written) loses too.
	if _, err := s.SetStorage(ctx, "acme", "fn", StorageWrite{Expected: 7, Data: json.RawMessage(`1`)}); !errors.As(err, &conflict) {
		t.Fatalf("set expecting revision 7: err = %v", err)
	}

	// Force skips the check.
	if w := mustSetStorage(t, s, "acme", "fn", StorageWrite{Expected: 0, Force: true, Data: json.RawMessage(`"forced"`)}); w.Rev != 2 {
		t.Fatalf("forced set = %+v", w)
	}
	// null deletes; the delete is a revision, so a reader of revision 2 conflicts after it.
	if w := mustSetStorage(t, s, "acme", "fn", StorageWrite{Expected: 2, Data: json.RawMessage(`null`)}); w.Rev != 3 || w.Data != nil {
		t.Fatalf("delete = %+v", w)
	}
	if got := mustGetStorage(t, s, "acme", "fn"); got.Rev != 3 || got.Data != nil {
		t.Fatalf("get after delete = %+v, want rev 3 and no data", got)
	}
	if _, err := s.SetStorage(ctx, "acme", "fn", StorageWrite{Expected: 2, Data: json.RawMessage(`1`)}); !errors.As(err, &conflict) || conflict.Current.Rev != 3 || conflict.Current.Data != nil {
		t.Fatalf("set after a delete, expecting the old revision: err = %v", err)
	}
	// An empty write deletes as well.
	if w := mustSetStorage(t, s, "acme", "fn", StorageWrite{Expected: 3}); w.Rev != 4 || w.Data != nil {
		t.Fatalf("empty write = %+v", w)
	}

	// Too large or not JSON: an error, nothing stored.
	big := json.RawMessage(`"` + strings.Repeat("x", MaxStorageBytes-1) + `"`) // 2 over
	if _, err := s.SetStorage(ctx, "acme", "fn", StorageWrite{Expected: 4, Data: big}); !errors.Is(err, ErrStorageTooLarge) {
		t.Fatalf("oversized set: err = %v", err)
	}
	exact := json.RawMessage(`"` + strings.Repeat("x", MaxStorageBytes-2) + `"`)
	for _, bad := range []string{`{`, `{"a":1} {"b":2}`, `undefined`, "\"\xff\""} {
		if _, err := s.SetStorage(ctx, "acme", "fn", StorageWrite{Expected: 4, Data: json.RawMessage(bad)}); !errors.Is(err, ErrStorageInvalid) {
			t.Fatalf("set %q: err = %v, want ErrStorageInvalid", bad, err)
		}
	}
	if got := mustGetStorage(t, s, "acme", "fn"); got.Rev != 4 {
		t.Fatalf("refused writes changed the storage: %+v", got)
	}
	if w := mustSetStorage(t, s, "acme", "fn", StorageWrite{Expected: 4, Data: exact}); w.Rev != 5 {
		t.Fatalf("a document of exactly %d bytes: %+v", MaxStorageBytes, w)
	}

	// Functions are separate; names the ids cannot carry are refused.
	if got := mustGetStorage(t, s, "acme", "other"); got.Rev != 0 {
		t.Fatalf("another function sees %+v", got)
	}
	if _, err := s.GetStorage(ctx, "acme", "a/b"); err == nil {
		t.Fatal("a function name with a slash was accepted")
	}

	// Only the newest revision keeps its data.
	withData := count(t, s, CollStorage, bson.D{{Key: "tenant", Value: "acme"}, {Key: "data", Value: bson.D{{Key: "$exists", Value: true}}}})
	if withData != 1 {
		t.Fatalf("%d revisions hold data, want 1 (the newest)", withData)
	}
}

// Old revisions are pruned, and a Store whose remembered revision was pruned
// (another node wrote meanwhile) still finds the newest.
func TestStoragePruneAndStaleHints(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	a := connect(t, e.URI(), Options{MaxPoolSize: 1})
	b := connect(t, e.URI(), Options{MaxPoolSize: 1})
	a.storagePruneAge = 0
	if got := mustGetStorage(t, b, "acme", "fn"); got.Rev != 0 {
		t.Fatal(got)
	}
	mustSetStorage(t, b, "acme", "fn", StorageWrite{Data: json.RawMessage(`0`)})
	for i := 1; i < 100; i++ {
		mustSetStorage(t, a, "acme", "fn", StorageWrite{Expected: int64(i), Data: json.RawMessage(fmt.Sprint(i))})
	}
	n := count(t, a, CollStorage, bson.D{{Key: "function", Value: "fn"}})
	if n > storageKeep+storagePruneEvery+1 {
		t.Fatalf("%d revisions kept after 100 writes", n)
	}
	// b remembers revision 1, long pruned.
	if got := mustGetStorage(t, b, "acme", "fn"); got.Rev != 100 || string(got.Data) != "99" {
		t.Fatalf("b reads %+v, want revision 100 holding 99", got)
	}
	// A fresh Store (no hint) and one far behind but within the kept window.
	c := connect(t, e.URI(), Options{MaxPoolSize: 1})
	if got := mustGetStorage(t, c, "acme", "fn"); got.Rev != 100 {
		t.Fatalf("fresh store reads %+v", got)
	}
	mustSetStorage(t, a, "acme", "fn", StorageWrite{Expected: 100, Data: json.RawMessage(`"last"`)})
	if _, err := c.SetStorage(testCtx(t), "acme", "fn", StorageWrite{Expected: 100, Data: json.RawMessage(`1`)}); !errors.Is(err, ErrStorageConflict) {
		t.Fatalf("c's stale write: %v", err)
	}
}

func TestStorageGoesWithFunctionAndTenant(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := testCtx(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "beta")
	for _, tn := range []string{"acme", "beta"} {
		for _, fn := range []string{"f", "g"} {
			mustPut(t, s, FunctionSpec{Tenant: tn, Name: fn, Code: "x"})
			mustSetStorage(t, s, tn, fn, StorageWrite{Data: json.RawMessage(`{"v":1}`)})
			mustSetStorage(t, s, tn, fn, StorageWrite{Expected: 1, Data: json.RawMessage(`{"v":2}`)})
		}
	}
	if err := s.DeleteFunction(ctx, "acme", "f"); err != nil {
		t.Fatal(err)
	}
	if got := mustGetStorage(t, s, "acme", "f"); got.Rev != 0 {
		t.Fatalf("deleted function's storage: %+v", got)
	}
	if got := mustGetStorage(t, s, "acme", "g"); got.Rev != 2 {
		t.Fatalf("sibling's storage: %+v", got)
	}
	// Recreated, it starts empty.
	mustPut(t, s, FunctionSpec{Tenant: "acme", Name: "f", Code: "x"})
	if got := mustGetStorage(t, s, "acme", "f"); got.Rev != 0 || got.Data != nil {
		t.Fatalf("recreated function's storage: %+v", got)
	}
	if err := s.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, CollStorage, bson.D{{Key: "tenant", Value: "acme"}}); n != 0 {
		t.Fatalf("%d storage revisions outlived their tenant", n)
	}
	if got := mustGetStorage(t, s, "beta", "g"); got.Rev != 2 || string(got.Data) != `{"v":2}` {
		t.Fatalf("other tenant's storage: %+v", got)
	}
}

// Two nodes (two clients, one connection each) and 8 workers increment one
// counter with get, set and a retry on conflict: it must end exactly at the
// number of increments, each revision written once.
func TestStorageCounterRaceTwoClients(t *testing.T) {
	t.Run("as built", func(t *testing.T) { testStorageCounterRace(t, true, 48/raceScale) })
	// Without the per-process turn-taking the unique index alone must hold.
	t.Run("without local locks", func(t *testing.T) { testStorageCounterRace(t, false, 24/raceScale) })
}

func testStorageCounterRace(t *testing.T, localLocks bool, increments int) {
	e := startEmbedded(t, t.TempDir())
	stores := []*Store{connect(t, e.URI(), contended), connect(t, e.URI(), contended)}
	for _, s := range stores {
		s.storagePruneAge = 0 // prune as soon as allowed, racing the writers
		if !localLocks {
			s.locks = nil
		}
	}
	ctx := testCtxFor(t, 4*time.Minute)
	jobs := make(chan int, increments)
	for i := range increments {
		jobs <- i
	}
	close(jobs)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		conflicts int
		errs      []error
		written   = map[int64]int{} // revision -> value written
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			for range jobs {
				cur, err := s.GetStorage(ctx, "acme", "counter")
				for err == nil {
					var n int
					if cur.Data != nil {
						_ = json.Unmarshal(cur.Data, &n)
					}
					var done Storage
					done, err = s.SetStorage(ctx, "acme", "counter", StorageWrite{Expected: cur.Rev, Data: json.RawMessage(fmt.Sprint(n + 1))})
					var c *StorageConflict
					if errors.As(err, &c) {
						mu.Lock()
						conflicts++
						mu.Unlock()
						cur, err = c.Current, nil // the conflict counts as a read
						continue
					}
					if err == nil {
						mu.Lock()
						if _, dup := written[done.Rev]; dup {
							errs = append(errs, fmt.Errorf("revision %d reported written twice", done.Rev))
						}
						written[done.Rev] = n + 1
						mu.Unlock()
						break
					}
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	got := mustGetStorage(t, stores[0], "acme", "counter")
	if got.Rev != int64(increments) || string(got.Data) != fmt.Sprint(increments) {
		t.Fatalf("counter = %s at revision %d, want %d at revision %d", got.Data, got.Rev, increments, increments)
	}
	for rev, v := range written {
		if int64(v) != rev {
			t.Fatalf("revision %d holds %d: an update was lost", rev, v)
		}
	}
	t.Logf("%d increments, %d conflicts retried", increments, conflicts)
}
