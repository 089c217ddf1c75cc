package modstore

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/wharfhq/wharf/npmspec"
)

var ms = npmspec.Ref{Name: "ms", Version: "2.1.3"}

// Invariant: a module is enqueued once however many requests on however many
// connections ask for it at the same moment.
func TestEnqueueOnceAcrossConnections(t *testing.T) {
	uri := startStore(t)
	a, b := dial(t, uri, Options{}), dial(t, uri, Options{})
	ctx := testCtx(t)
	var created atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			sts, n, err := s.Enqueue(ctx, []npmspec.Ref{ms, {Name: "@types/node", Version: "20.1.0"}})
			if err != nil {
				t.Errorf("Enqueue: %v", err)
				return
			}
			created.Add(int64(n))
			for _, st := range sts {
				if st.Status != StatusBuilding {
					t.Errorf("status %+v, want building", st)
				}
			}
		}()
	}
	wg.Wait()
	if created.Load() != 2 {
		t.Fatalf("%d jobs created, want 2", created.Load())
	}
	jobs, err := a.Pending(ctx, 0)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("Pending = %v, %v; want 2 jobs", jobs, err)
	}
	if _, _, err := a.Enqueue(ctx, []npmspec.Ref{{Name: "ms", Version: "^2"}}); err == nil {
		t.Fatal("Enqueue accepted a range")
	}
}

// Invariant: of builders racing to claim one job, exactly one wins.
func TestClaimOneWinner(t *testing.T) {
	uri := startStore(t)
	stores := []*Store{dial(t, uri, Options{}), dial(t, uri, Options{})}
	ctx := testCtx(t)
	if _, _, err := stores[0].Enqueue(ctx, []npmspec.Ref{ms}); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := stores[i%2].Claim(ctx, ms, fmt.Sprintf("b%d", i), time.Minute)
			if err != nil {
				t.Errorf("Claim: %v", err)
			}
			if l != nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d builders won the claim, want 1", wins.Load())
	}
}

// Invariant: a lease that expires (its builder died) lets the next attempt's
// claim win; the old holder then can neither renew nor record a result, and
// the new holder's result stands with the attempts counted.
func TestLeaseExpiryHandsOver(t *testing.T) {
	uri := startStore(t)
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := dial(t, uri, Options{Now: clk.Now})
	ctx := testCtx(t)
	if _, _, err := s.Enqueue(ctx, []npmspec.Ref{ms}); err != nil {
		t.Fatal(err)
	}
	la, err := s.Claim(ctx, ms, "A", 10*time.Second)
	if err != nil || la == nil || la.Attempt != 1 {
		t.Fatalf("A's claim: %+v, %v", la, err)
	}
	clk.Add(5 * time.Second)
	if err := s.Renew(ctx, la, 10*time.Second); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	clk.Add(9 * time.Second) // 14 s: past the first expiry, not the renewed one
	if lb, err := s.Claim(ctx, ms, "B", 10*time.Second); err != nil || lb != nil {
		t.Fatalf("B claimed a renewed lease: %+v, %v", lb, err)
	}
	st, err := s.Status(ctx, ms)
	if err != nil || st.Status != StatusBuilding || st.Attempts != 1 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	clk.Add(10*time.Second + ClockSkew) // A stopped renewing: expired
	lb, err := s.Claim(ctx, ms, "B", 10*time.Second)
	if err != nil || lb == nil || lb.Attempt != 2 || lb.GiveUp {
		t.Fatalf("B's claim: %+v, %v", lb, err)
	}
	if err := s.Renew(ctx, la, time.Minute); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("A's renew after losing: %v, want ErrLeaseLost", err)
	}
	if _, err := s.Complete(ctx, la, Result{Status: StatusReady}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("A's Complete after losing: %v, want ErrLeaseLost", err)
	}
	res, err := s.Complete(ctx, lb, Result{Status: StatusReady, SHA256: "abc"})
	if err != nil || res.Attempts != 2 || res.Builder != "B" {
		t.Fatalf("B's Complete = %+v, %v", res, err)
	}
	st, err = s.Status(ctx, ms)
	if err != nil || st.Status != StatusReady || st.Attempts != 2 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if jobs, _ := s.Pending(ctx, 0); len(jobs) != 0 {
		t.Fatalf("job still pending: %v", jobs)
	}
	// A fresh Store (another node) reads the same, and enqueueing again is a no-op.
	other := dial(t, uri, Options{Now: clk.Now})
	sts, created, err := other.Enqueue(ctx, []npmspec.Ref{ms})
	if err != nil || created != 0 || sts[0].Status != StatusReady {
		t.Fatalf("Enqueue of a built module = %+v, %d, %v", sts, created, err)
	}
}

// Invariant: transient failures are retried after a growing delay up to the
// attempt budget, keeping the last error; then the module is failed, without a
// result, until a request after RetryFailedAfter re-opens it for a new round.
func TestTransientRetriesThenGiveUpThenNewRound(t *testing.T) {
	uri := startStore(t)
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := dial(t, uri, Options{Now: clk.Now, MaxAttempts: 2, RetryDelay: time.Second, RetryFailedAfter: time.Minute})
	ctx := testCtx(t)
	if _, _, err := s.Enqueue(ctx, []npmspec.Ref{ms}); err != nil {
		t.Fatal(err)
	}
	l1, _ := s.Claim(ctx, ms, "A", time.Minute)
	if l1.LastInRound {
		t.Fatal("attempt 1 of 2 is not the last")
	}
	if err := s.Release(ctx, l1, "registry unreachable", "npm error ETIMEDOUT"); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Claim(ctx, ms, "A", time.Minute); l != nil {
		t.Fatalf("retried before the delay: %+v", l)
	}
	st, _ := s.Status(ctx, ms)
	if st.Status != StatusBuilding || st.Attempts != 1 || st.Error != "registry unreachable" {
		t.Fatalf("Status = %+v", st)
	}
	clk.Add(time.Second)
	l2, err := s.Claim(ctx, ms, "A", time.Minute)
	if err != nil || l2 == nil || l2.Attempt != 2 || l2.GiveUp || !l2.LastInRound {
		t.Fatalf("retry claim: %+v, %v", l2, err)
	}
	// The last attempt of the round fails too: the builder gives up.
	if err := s.GiveUp(ctx, l2, "gave up after 2 attempts: registry unreachable again", "log 2"); err != nil {
		t.Fatal(err)
	}
	for _, get := range []func() (Status, error){
		func() (Status, error) { return s.Status(ctx, ms) },
		func() (Status, error) { sts, err := s.States(ctx, []npmspec.Ref{ms}); return sts[0], err },
	} {
		st, err := get()
		if err != nil || st.Status != StatusFailed || st.Result != nil || st.Log != "log 2" || !strings.Contains(st.Error, "again") {
			t.Fatalf("Status after giving up = %+v, %v", st, err)
		}
	}
	if jobs, _ := s.Pending(ctx, 0); len(jobs) != 0 {
		t.Fatalf("a closed job is pending: %v", jobs)
	}
	// Asked for again too soon: still failed, nothing re-opened.
	sts, created, err := s.Enqueue(ctx, []npmspec.Ref{ms})
	if err != nil || created != 0 || sts[0].Status != StatusFailed {
		t.Fatalf("early Enqueue = %+v, %d, %v", sts, created, err)
	}
	clk.Add(time.Minute)
	sts, created, err = s.Enqueue(ctx, []npmspec.Ref{ms})
	if err != nil || created != 1 || sts[0].Status != StatusBuilding {
		t.Fatalf("Enqueue after RetryFailedAfter = %+v, %d, %v", sts, created, err)
	}
	l3, err := s.Claim(ctx, ms, "B", time.Minute)
	if err != nil || l3 == nil || l3.Attempt != 3 || l3.GiveUp || l3.LastInRound {
		t.Fatalf("new round's claim: %+v, %v", l3, err)
	}
	if _, err := s.Complete(ctx, l3, Result{Status: StatusReady, SHA256: "x"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(ctx, ms); st.Status != StatusReady || st.Attempts != 3 {
		t.Fatalf("after the new round: %+v", st)
	}
}

// Invariant: when the round's last builder dies, the next claim only closes
// the round, with the error of the attempt before.
func TestGiveUpAfterLastBuilderDied(t *testing.T) {
	uri := startStore(t)
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := dial(t, uri, Options{Now: clk.Now, MaxAttempts: 1})
	ctx := testCtx(t)
	if _, _, err := s.Enqueue(ctx, []npmspec.Ref{ms}); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Claim(ctx, ms, "A", time.Minute); l == nil || !l.LastInRound {
		t.Fatalf("claim: %+v", l)
	}
	clk.Add(time.Minute + ClockSkew)
	l2, err := s.Claim(ctx, ms, "B", time.Minute)
	if err != nil || l2 == nil || !l2.GiveUp || !strings.Contains(l2.Error, "stopped without finishing") {
		t.Fatalf("give-up claim: %+v, %v", l2, err)
	}
}

// Invariant: a builder that dies after recording the result but before marking
// the job done leaves a job the next claim only finalises.
func TestFinalizeAfterCrash(t *testing.T) {
	uri := startStore(t)
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := dial(t, uri, Options{Now: clk.Now})
	ctx := testCtx(t)
	if _, _, err := s.Enqueue(ctx, []npmspec.Ref{ms}); err != nil {
		t.Fatal(err)
	}
	l1, _ := s.Claim(ctx, ms, "A", time.Minute)
	// What Complete does before it finishes the lease, then "crash".
	if _, err := s.results.InsertOne(ctx, Result{ID: ms.String(), Name: ms.Name, Version: ms.Version, Status: StatusReady, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := s.Pending(ctx, 0); len(jobs) != 1 {
		t.Fatalf("pending = %v", jobs)
	}
	clk.Add(time.Minute + ClockSkew)
	l2, err := s.Claim(ctx, ms, "B", time.Minute)
	if err != nil || l2 == nil || l2.Attempt != 2 {
		t.Fatalf("claim: %+v, %v", l2, err)
	}
	if _, ok, _ := s.Result(ctx, ms); !ok {
		t.Fatal("no result")
	}
	if err := s.Finalize(ctx, l2); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := s.Pending(ctx, 0); len(jobs) != 0 {
		t.Fatalf("pending = %v", jobs)
	}
	_ = l1
}

// Invariant: when two builders both complete (one after losing its lease but
// before noticing), one result stands and the loser's closure is deleted.
func TestSecondResultDiscarded(t *testing.T) {
	uri := startStore(t)
	s := dial(t, uri, Options{})
	ctx := testCtx(t)
	if _, _, err := s.Enqueue(ctx, []npmspec.Ref{ms}); err != nil {
		t.Fatal(err)
	}
	l, _ := s.Claim(ctx, ms, "A", time.Minute)
	if _, err := s.results.InsertOne(ctx, Result{ID: ms.String(), Name: ms.Name, Version: ms.Version, Status: StatusReady, SHA256: "first"}); err != nil {
		t.Fatal(err)
	}
	fid, _, _, err := s.PutClosure(ctx, ms, bytes.NewReader([]byte("second")), "A")
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Complete(ctx, l, Result{Status: StatusReady, FileID: fid, SHA256: "second"})
	if err != nil || res.SHA256 != "first" {
		t.Fatalf("Complete = %+v, %v; want the first result", res, err)
	}
	if _, _, err := s.OpenClosure(ctx, fid); !errors.Is(err, ErrNotFound) {
		t.Fatalf("loser's closure still there: %v", err)
	}
	if n, _ := s.chunks.CountDocuments(ctx, bson.D{{Key: "files_id", Value: mustOID(t, fid)}}); n != 0 {
		t.Fatalf("%d chunks of the loser's closure left", n)
	}
}

func mustOID(t *testing.T, hexID string) bson.ObjectID {
	id, err := bson.ObjectIDFromHex(hexID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Invariant: a closure reads back byte for byte with the hash PutClosure
// reported, across chunk boundaries; a missing chunk is an error, not a short read.
func TestClosureRoundTrip(t *testing.T) {
	uri := startStore(t)
	s := dial(t, uri, Options{})
	ctx := testCtx(t)
	for _, size := range []int{0, 1, ChunkSize, 2*ChunkSize + 12345} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := make([]byte, size)
			_, _ = rand.Read(data)
			fid, n, sum, err := s.PutClosure(ctx, ms, bytes.NewReader(data), "A")
			if err != nil || n != int64(size) {
				t.Fatalf("PutClosure = %d, %v", n, err)
			}
			want := sha256.Sum256(data)
			if sum != hex.EncodeToString(want[:]) {
				t.Fatalf("sha256 %s, want %x", sum, want)
			}
			rc, length, err := s.OpenClosure(ctx, fid)
			if err != nil || length != int64(size) {
				t.Fatalf("OpenClosure = %d, %v", length, err)
			}
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, %v", len(got), err)
			}
			if size > ChunkSize {
				if _, err := s.chunks.DeleteOne(ctx, bson.D{{Key: "_id", Value: chunkID(mustOID(t, fid), 1)}}); err != nil {
					t.Fatal(err)
				}
				rc, _, _ := s.OpenClosure(ctx, fid)
				if _, err := io.ReadAll(rc); err == nil {
					t.Fatal("read a closure with a missing chunk without error")
				}
			}
			if err := s.DeleteClosure(ctx, fid); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.OpenClosure(ctx, fid); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted closure opens: %v", err)
			}
		})
	}
}
