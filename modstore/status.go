package modstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/wharfhq/wharf/npmspec"
)

// Status tells where one module stands, with its attempts so far and the last
// error. ErrNotFound when it was never asked for.
func (s *Store) Status(ctx context.Context, r npmspec.Ref) (Status, error) {
	return s.status(ctx, r, true)
}

// States is the status of each module, in order, without the attempt count
// of those still building (it costs a read per attempt). A module never asked
// for is reported as building: the caller is about to enqueue it, or another
// node's request did and its insert is not visible yet.
func (s *Store) States(ctx context.Context, refs []npmspec.Ref) ([]Status, error) {
	out := make([]Status, len(refs))
	for i, r := range refs {
		st, err := s.status(ctx, r, false)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if err != nil {
			st = Status{Name: r.Name, Version: r.Version, Status: StatusBuilding}
		}
		out[i] = st
	}
	return out, nil
}

// Result returns a module's final result; ok is false while it has none.
// Final results never change, so they are cached in memory.
func (s *Store) Result(ctx context.Context, r npmspec.Ref) (Result, bool, error) {
	id := r.String()
	if v, ok := s.final.Load(id); ok {
		return v.(Result), true, nil
	}
	var res Result
	ok, err := findByID(ctx, s.results, id, &res)
	if err != nil {
		return Result{}, false, fmt.Errorf("modstore: read result of %s: %w", id, err)
	}
	if !ok {
		return Result{}, false, nil
	}
	s.final.Store(id, res)
	return res, true, nil
}

func (s *Store) status(ctx context.Context, r npmspec.Ref, full bool) (Status, error) {
	st := Status{Name: r.Name, Version: r.Version}
	res, ok, err := s.Result(ctx, r)
	if err != nil {
		return Status{}, err
	}
	if ok {
		st.Status, st.Attempts, st.Error, st.Log, st.Result = res.Status, res.Attempts, res.Error, res.Log, &res
		return st, nil
	}
	var job jobDoc
	ok, err = findByID(ctx, s.jobs, r.String(), &job)
	if err != nil {
		return Status{}, fmt.Errorf("modstore: read job %s: %w", r, err)
	}
	if !ok {
		return Status{}, fmt.Errorf("%s: %w", r, ErrNotFound)
	}
	st.Status = StatusBuilding
	if !full && job.State != jobDone {
		return st, nil
	}
	leases, err := s.leasesOf(ctx, job.ID)
	if err != nil {
		return Status{}, err
	}
	st.Attempts = len(leases)
	for _, l := range leases {
		if l.Error != "" {
			st.Error = l.Error
		}
	}
	// Closed without a result: its last round gave up (transient failures).
	if job.State == jobDone && len(leases) > 0 && leases[len(leases)-1].gaveUp() {
		last := leases[len(leases)-1]
		st.Status, st.Error, st.Log, st.FailedAt = StatusFailed, last.Error, last.Log, *last.FinishedAt
	}
	return st, nil
}
