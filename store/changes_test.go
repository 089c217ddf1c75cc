package store

import (
	"sync"
	"testing"
	"time"
)

// Invariant: concurrent appends from two separate clients get distinct,
// gap-free sequence numbers, and readers see them in order.
func TestChangeFeedRace(t *testing.T) {
	_, e := newTestStore(t)
	a := connect(t, e.URI(), contended)
	b := connect(t, e.URI(), contended)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		st := a
		if w%2 == 1 {
			st = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := st.AppendChange(ctx, ChangeFunction, "acme", "f"); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got, err := a.ChangesSince(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 80 {
		t.Fatalf("%d changes, want 80", len(got))
	}
	for i, c := range got {
		if c.Seq != int64(i+1) {
			t.Fatalf("change %d has seq %d: gap or duplicate", i, c.Seq)
		}
	}
	if last, _ := b.LastChange(ctx); last != 80 {
		t.Fatalf("last = %d", last)
	}
	tail, _ := a.ChangesSince(ctx, 78, 10)
	if len(tail) != 2 || tail[0].Seq != 79 {
		t.Fatalf("since 78: %+v", tail)
	}
}

// Invariant: trimming keeps the newest change, so numbering never restarts.
func TestTrimChanges(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := testCtx(t)
	for i := 0; i < 3; i++ {
		if _, err := st.AppendChange(ctx, ChangeTenant, "acme", ""); err != nil {
			t.Fatal(err)
		}
	}
	n, err := st.TrimChanges(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("trimmed %d, %v; want 2", n, err)
	}
	seq, err := st.AppendChange(ctx, ChangeTenant, "acme", "")
	if err != nil || seq != 4 {
		t.Fatalf("after trim: seq %d, %v; want 4", seq, err)
	}
}
