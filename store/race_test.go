package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Two nodes (two clients, one connection each) and 16 writers append 200
// versions of one function: the versions must be exactly 1..200. FerretDB does
// not make updates atomic across connections; the unique index must do it.
func TestPutFunctionRaceTwoClients(t *testing.T) {
	t.Run("as built", func(t *testing.T) { testPutFunctionRace(t, true, 200/raceScale) })
	// Without the per-process turn-taking every writer collides at the
	// database: the unique index alone must keep the versions exact.
	// Fewer puts: every attempt of 16 writers now costs a round trip or two.
	t.Run("without local locks", func(t *testing.T) { testPutFunctionRace(t, false, 64/raceScale) })
}

// contended: one connection per client, as a busy node has, and room to
// queue on it (the 3 s default is for outages).
var contended = Options{MaxPoolSize: 1, SelectionTimeout: 30 * time.Second}

func testPutFunctionRace(t *testing.T, localLocks bool, puts int) {
	e := startEmbedded(t, t.TempDir())
	stores := []*Store{connect(t, e.URI(), contended), connect(t, e.URI(), contended)}
	if !localLocks {
		for _, s := range stores {
			s.locks = nil
		}
	}
	ctx := testCtxFor(t, 4*time.Minute)
	mustTenant(t, stores[0], "acme")

	const writers = 16
	jobs := make(chan int, puts)
	for i := range puts {
		jobs <- i
	}
	close(jobs)

	type result struct {
		version int
		created bool
		err     error
	}
	results := make(chan result, puts)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s := stores[w%2]
			for i := range jobs {
				fv, created, err := s.PutFunction(ctx, FunctionSpec{
					Tenant: "acme", Name: "hot", Code: fmt.Sprintf("put %d", i),
					Secrets: map[string]string{"N": fmt.Sprint(i)},
				})
				results <- result{fv.Version, created, err}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(results)

	var versions []int
	created := 0
	for r := range results {
		if r.err != nil {
			t.Errorf("PutFunction: %v", r.err)
			continue
		}
		versions = append(versions, r.version)
		if r.created {
			created++
		}
	}
	slices.Sort(versions)
	want := make([]int, puts)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(versions, want) {
		t.Fatalf("returned versions are not exactly 1..%d: %v", puts, versions)
	}
	if created != 1 {
		t.Errorf("%d puts reported created, want 1", created)
	}

	// What is stored agrees.
	if n := count(t, stores[1], CollFunctionVersions, bson.D{{Key: "tenant", Value: "acme"}, {Key: "name", Value: "hot"}}); n != int64(puts) {
		t.Fatalf("%d stored versions, want %d", n, puts)
	}
	vs, err := stores[1].ListVersions(ctx, "acme", "hot")
	if err != nil {
		t.Fatal(err)
	}
	var stored []int
	for _, v := range vs {
		stored = append(stored, v.Version)
	}
	if !slices.Equal(stored, want) {
		t.Fatalf("stored versions are not exactly 1..%d: %v", puts, stored)
	}
	// Each version kept its own sealed secrets intact.
	cur, err := stores[0].GetFunction(ctx, "acme", "hot")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Version != puts || cur.Code != "put "+cur.Secrets["N"] {
		t.Fatalf("current version = %d code %q secrets %v", cur.Version, cur.Code, cur.Secrets)
	}
}

// Two nodes start at once on a fresh store with no admin token configured:
// exactly one generates (and would print) the token, and it works on both.
func TestEnsureAdminTokenRace(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	for round := range 8 {
		db := fmt.Sprintf("round%d", round)
		stores := []*Store{
			connect(t, e.URI(), Options{Database: db, MaxPoolSize: 1}),
			connect(t, e.URI(), Options{Database: db, MaxPoolSize: 1}),
		}
		secrets := make([]string, 2)
		errs := make([]error, 2)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				secrets[i], errs[i] = stores[i].EnsureAdminToken(testCtx(t), "")
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: errors %v", round, errs)
		}
		var generated []string
		for _, s := range secrets {
			if s != "" {
				generated = append(generated, s)
			}
		}
		if len(generated) != 1 {
			t.Fatalf("round %d: %d nodes returned a generated token, want exactly 1", round, len(generated))
		}
		for i, s := range stores {
			p, err := s.Authenticate(testCtx(t), generated[0])
			if err != nil || !p.Admin {
				t.Fatalf("round %d: node %d does not accept the generated token: %+v, %v", round, i, p, err)
			}
		}
		if n := count(t, stores[0], CollSettings, bson.D{}); n != 1 {
			t.Fatalf("round %d: %d settings documents", round, n)
		}
	}
}

// Writers racing a DeleteTenant never leave tokens or versions behind.
func TestDeleteTenantRacesWriters(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	stores := []*Store{connect(t, e.URI(), contended), connect(t, e.URI(), contended)}
	ctx := testCtx(t)
	for round := range 10 {
		mustTenant(t, stores[0], "acme")
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := stores[w%2]
				<-start
				for i := 0; ; i++ {
					var err error
					if w == 3 {
						_, _, err = s.CreateToken(ctx, "acme", "")
					} else {
						_, _, err = s.PutFunction(ctx, FunctionSpec{Tenant: "acme", Name: fmt.Sprintf("f%d", w), Code: fmt.Sprint(i)})
					}
					if errors.Is(err, ErrNotFound) {
						return // the tenant is gone
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		close(start)
		if err := stores[1].DeleteTenant(ctx, "acme"); err != nil {
			t.Fatalf("round %d: DeleteTenant: %v", round, err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: writer: %v", round, err)
		}
		for _, coll := range []string{CollTokens, CollFunctionVersions} {
			if n := count(t, stores[0], coll, bson.D{{Key: "tenant", Value: "acme"}}); n != 0 {
				t.Fatalf("round %d: %d %s documents outlived their tenant", round, n, coll)
			}
		}
	}
}
