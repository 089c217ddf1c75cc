package modstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/wharfhq/wharf/npmspec"
)

func leaseID(job string, attempt int) string { return job + "#" + strconv.Itoa(attempt) }

// Enqueue asks for a build of each module that has no final result and no job
// yet, and returns the modules' statuses in the order given. Asking again, from
// any tenant, request or node, is a no-op: the job's insert is guarded by its _id.
// created counts the jobs this call inserted.
func (s *Store) Enqueue(ctx context.Context, refs []npmspec.Ref) (sts []Status, created int, err error) {
	sts = make([]Status, len(refs))
	for i, r := range refs {
		if !r.Valid() {
			return nil, created, fmt.Errorf("modstore: invalid module %q", r.String())
		}
		st, err := s.status(ctx, r, false)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, created, err
		}
		if err == nil && st.Status == StatusFailed && st.Result == nil && !s.now().Before(st.FailedAt.Add(s.opt.RetryFailedAfter)) {
			// Its last round failed for transient reasons (registry down):
			// re-open the job for a new round. Concurrent re-openers all
			// write the same value; the builders' claims stay guarded by
			// the lease _ids.
			if _, err := s.jobs.UpdateOne(ctx, bson.D{{Key: "_id", Value: r.String()}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: jobQueued}}}}); err != nil {
				return nil, created, fmt.Errorf("modstore: re-open %s: %w", r, err)
			}
			created++
			sts[i] = Status{Name: r.Name, Version: r.Version, Status: StatusBuilding, Attempts: st.Attempts}
			continue
		}
		if err == nil {
			sts[i] = st
			continue
		}
		_, err = s.jobs.InsertOne(ctx, jobDoc{ID: r.String(), Name: r.Name, Version: r.Version, State: jobQueued, CreatedAt: s.now()})
		switch {
		case err == nil:
			created++
		case mongo.IsDuplicateKeyError(err): // a concurrent request enqueued it
		default:
			return nil, created, fmt.Errorf("modstore: enqueue %s: %w", r, err)
		}
		sts[i] = Status{Name: r.Name, Version: r.Version, Status: StatusBuilding}
	}
	return sts, created, nil
}

// Pending lists queued jobs, oldest first, at most limit of them.
func (s *Store) Pending(ctx context.Context, limit int) ([]Job, error) {
	if limit <= 0 {
		limit = findPageSize
	}
	cur, err := s.jobs.Find(ctx, bson.D{{Key: "state", Value: jobQueued}},
		options.Find().SetSort(bson.D{{Key: "created_at", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("modstore: list queued jobs: %w", err)
	}
	var docs []jobDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("modstore: list queued jobs: %w", err)
	}
	out := make([]Job, 0, len(docs))
	for _, d := range docs {
		out = append(out, Job{Ref: npmspec.Ref{Name: d.Name, Version: d.Version}, CreatedAt: d.CreatedAt})
	}
	return out, nil
}

// leasesOf returns a job's leases in attempt order. Attempts are contiguous
// from 1 (attempt n+1 is claimed only after n was read), so probing _ids
// finds them all; FerretDB answers _id lookups from its index.
func (s *Store) leasesOf(ctx context.Context, job string) ([]Lease, error) {
	var out []Lease
	for n := 1; ; n++ {
		var l Lease
		ok, err := findByID(ctx, s.leases, leaseID(job, n), &l)
		if err != nil {
			return nil, fmt.Errorf("modstore: read leases of %s: %w", job, err)
		}
		if !ok {
			return out, nil
		}
		out = append(out, l)
	}
}

// Claim decides (Decide) what to do about a queued job and, unless that is to
// wait, claims the next attempt for holder by inserting its lease. It returns
// nil when there is nothing to do or another builder won the claim.
func (s *Store) Claim(ctx context.Context, r npmspec.Ref, holder string, ttl time.Duration) (*Lease, error) {
	job := r.String()
	leases, err := s.leasesOf(ctx, job)
	if err != nil {
		return nil, err
	}
	latest := latestState(leases)
	now := s.now()
	action, attempt := Decide(latest, now, s.opt.MaxAttempts, s.opt.RetryDelay)
	if action == Wait {
		return nil, nil
	}
	round := 1
	if latest != nil && !latest.GaveUp {
		round = latest.RoundAttempts + 1
	}
	l := &Lease{ID: leaseID(job, attempt), Job: job, Name: r.Name, Version: r.Version, Attempt: attempt,
		Holder: holder, GiveUp: action == GiveUp, AcquiredAt: now, ExpiresAt: now.Add(ttl),
		LastInRound: round >= s.opt.MaxAttempts}
	if len(leases) > 0 && action == GiveUp {
		// The failed result carries the last error seen.
		last := leases[len(leases)-1]
		l.Error = last.Error
		if l.Error == "" {
			l.Error = fmt.Sprintf("the builder of attempt %d stopped without finishing (crashed or stalled)", last.Attempt)
		}
		l.Log = last.Log
	}
	if _, err := s.leases.InsertOne(ctx, l); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return nil, nil // another builder claimed this attempt first
		}
		return nil, fmt.Errorf("modstore: claim %s: %w", l.ID, err)
	}
	return l, nil
}

// Renew extends a lease held by l.Holder to ttl from now and reports
// ErrLeaseLost when another builder has claimed the next attempt meanwhile.
func (s *Store) Renew(ctx context.Context, l *Lease, ttl time.Duration) error {
	if err := s.checkHeld(ctx, l); err != nil {
		return err
	}
	exp := s.now().Add(ttl)
	if _, err := s.leases.UpdateOne(ctx, bson.D{{Key: "_id", Value: l.ID}, {Key: "holder", Value: l.Holder}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expires_at", Value: exp}}}}); err != nil {
		return fmt.Errorf("modstore: renew %s: %w", l.ID, err)
	}
	l.ExpiresAt = exp
	// A claim decided on the old expiry may have landed just before the update.
	return s.checkHeld(ctx, l)
}

// checkHeld reports ErrLeaseLost when attempt l.Attempt+1 exists.
func (s *Store) checkHeld(ctx context.Context, l *Lease) error {
	var next Lease
	ok, err := findByID(ctx, s.leases, leaseID(l.Job, l.Attempt+1), &next)
	if err != nil {
		return fmt.Errorf("modstore: check lease %s: %w", l.ID, err)
	}
	if ok {
		return fmt.Errorf("%s taken over by %s: %w", l.ID, next.Holder, ErrLeaseLost)
	}
	return nil
}

// Complete records a lease's final result (ready, or failed for good), then
// finishes the lease and marks the job done. The result is an insert guarded by
// its _id, so of two builders that both built a module (one of them after
// losing its lease) one result stands; the other's is discarded, its closure
// deleted, and Complete returns the standing result.
func (s *Store) Complete(ctx context.Context, l *Lease, res Result) (Result, error) {
	if err := s.checkHeld(ctx, l); err != nil {
		return Result{}, err
	}
	res.ID, res.Name, res.Version = l.Job, l.Name, l.Version
	res.Attempts, res.Builder = l.Attempt, l.Holder
	if res.BuiltAt.IsZero() {
		res.BuiltAt = s.now()
	}
	if _, err := s.results.InsertOne(ctx, res); err != nil {
		if !mongo.IsDuplicateKeyError(err) {
			return Result{}, fmt.Errorf("modstore: record result of %s: %w", l.Job, err)
		}
		if res.FileID != "" {
			if derr := s.DeleteClosure(ctx, res.FileID); derr != nil {
				return Result{}, derr
			}
		}
		var standing Result
		if _, err := findByID(ctx, s.results, l.Job, &standing); err != nil {
			return Result{}, fmt.Errorf("modstore: read result of %s: %w", l.Job, err)
		}
		res = standing
	}
	s.final.Store(l.Job, res)
	return res, s.finish(ctx, l, "", false, "")
}

// Finalize finishes a lease whose job already has a result (its previous
// holder died after recording it): the job is marked done.
func (s *Store) Finalize(ctx context.Context, l *Lease) error {
	return s.finish(ctx, l, "", false, "")
}

// Release finishes a lease after a transient failure: the job stays queued,
// and another attempt follows after the retry delay (Decide).
func (s *Store) Release(ctx context.Context, l *Lease, cause, log string) error {
	return s.finish(ctx, l, cause, true, log)
}

// GiveUp ends a round whose attempts all failed for transient reasons: the
// lease finishes as a give-up and the job is closed without a result, so the
// module is failed now and is built again (a new round) when a request asks
// for it after Options.RetryFailedAfter (Enqueue).
func (s *Store) GiveUp(ctx context.Context, l *Lease, cause, log string) error {
	if err := s.checkHeld(ctx, l); err != nil {
		return err
	}
	l.GiveUp = true
	return s.finish(ctx, l, cause, false, log)
}

func (s *Store) finish(ctx context.Context, l *Lease, cause string, transient bool, log string) error {
	now := s.now()
	set := bson.D{{Key: "finished_at", Value: now}}
	if cause != "" {
		set = append(set, bson.E{Key: "error", Value: cause}, bson.E{Key: "transient", Value: transient}, bson.E{Key: "log", Value: log})
	}
	if l.GiveUp {
		set = append(set, bson.E{Key: "give_up", Value: true})
	}
	if _, err := s.leases.UpdateOne(ctx, bson.D{{Key: "_id", Value: l.ID}, {Key: "holder", Value: l.Holder}},
		bson.D{{Key: "$set", Value: set}}); err != nil {
		return fmt.Errorf("modstore: finish %s: %w", l.ID, err)
	}
	l.FinishedAt = &now
	if transient {
		return nil
	}
	if _, err := s.jobs.UpdateOne(ctx, bson.D{{Key: "_id", Value: l.Job}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: jobDone}}}}); err != nil {
		return fmt.Errorf("modstore: mark %s done: %w", l.Job, err)
	}
	return nil
}
