package modstore

import (
	"time"

	"github.com/wharfhq/wharf/npmspec"
)

// jobDoc is a module's place in the build queue, inserted once per module.
type jobDoc struct {
	ID        string    `bson:"_id"` // "name@version"
	Name      string    `bson:"name"`
	Version   string    `bson:"version"`
	State     string    `bson:"state"` // queued | done; written by the current lease holder
	CreatedAt time.Time `bson:"created_at"`
}

// Job is a queued module.
type Job struct {
	Ref       npmspec.Ref
	CreatedAt time.Time
}

// Lease is one attempt at a job. Its _id makes the claim a compare-and-set;
// only its holder writes it afterwards.
type Lease struct {
	ID         string     `bson:"_id"` // "name@version#attempt"
	Job        string     `bson:"job"` // "name@version"
	Name       string     `bson:"name"`
	Version    string     `bson:"version"`
	Attempt    int        `bson:"attempt"`
	Holder     string     `bson:"holder"` // builder id
	GiveUp     bool       `bson:"give_up,omitempty"`
	AcquiredAt time.Time  `bson:"acquired_at"`
	ExpiresAt  time.Time  `bson:"expires_at"`
	FinishedAt *time.Time `bson:"finished_at,omitempty"`
	// Error is the attempt's failure, when it failed; Transient failures leave
	// the job queued for another attempt.
	Error     string `bson:"error,omitempty"`
	Transient bool   `bson:"transient,omitempty"`
	Log       string `bson:"log,omitempty"`

	// LastInRound is set by Claim on the round's last attempt: a transient
	// failure then ends the round (GiveUp) instead of releasing the job.
	LastInRound bool `bson:"-"`
}

// Ref is the module the lease is for.
func (l *Lease) Ref() npmspec.Ref { return npmspec.Ref{Name: l.Name, Version: l.Version} }

func (l *Lease) gaveUp() bool { return l.GiveUp && l.FinishedAt != nil }

// latestState is Decide's view of a job's leases (in attempt order; nil when none).
func latestState(leases []Lease) *LeaseState {
	if len(leases) == 0 {
		return nil
	}
	l := leases[len(leases)-1]
	st := &LeaseState{Attempt: l.Attempt, ExpiresAt: l.ExpiresAt, Finished: l.FinishedAt != nil,
		Failed: l.FinishedAt != nil && l.Transient, GaveUp: l.gaveUp()}
	if l.FinishedAt != nil {
		st.FinishedAt = *l.FinishedAt
	}
	for i := len(leases) - 1; i >= 0; i-- {
		if i < len(leases)-1 && leases[i].gaveUp() {
			break
		}
		st.RoundAttempts++
	}
	return st
}

// Result is a module's final outcome, inserted once.
type Result struct {
	ID      string `bson:"_id" json:"-"` // "name@version"
	Name    string `bson:"name" json:"name"`
	Version string `bson:"version" json:"version"`
	Status  string `bson:"status" json:"status"` // ready | failed

	// Ready: the closure in the bucket and what it holds.
	FileID       string   `bson:"file_id,omitempty" json:"-"`
	SHA256       string   `bson:"sha256,omitempty" json:"sha256,omitempty"`
	Size         int64    `bson:"size,omitempty" json:"size,omitempty"` // bytes of the stored .tar.gz
	UnpackedSize int64    `bson:"unpacked_size,omitempty" json:"unpacked_size,omitempty"`
	Files        int      `bson:"files,omitempty" json:"files,omitempty"`
	Packages     int      `bson:"packages,omitempty" json:"packages,omitempty"`
	Peers        []string `bson:"peers,omitempty" json:"peers,omitempty"` // peerDependencies named inside the closure

	Error      string    `bson:"error,omitempty" json:"error,omitempty"`
	Log        string    `bson:"log,omitempty" json:"log,omitempty"` // npm's output (tail)
	Attempts   int       `bson:"attempts" json:"attempts"`
	Builder    string    `bson:"builder" json:"builder"`
	BuiltAt    time.Time `bson:"built_at" json:"built_at"`
	DurationMS int64     `bson:"duration_ms" json:"duration_ms"`
}

// Ref is the module the result is for.
func (r *Result) Ref() npmspec.Ref { return npmspec.Ref{Name: r.Name, Version: r.Version} }

// Status is what the API tells about one module.
type Status struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Status  string `json:"status"`
	// Attempts so far; Error is the final error (failed) or the last
	// transient one (building); Log is npm's output of a failed build.
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
	Log      string `json:"-"`
	// Result is set once the module is ready or failed for good; a module
	// whose builds failed only for transient reasons has none (it is built
	// again when asked for after RetryFailedAfter).
	Result *Result `json:"-"`
	// FailedAt is when a module without a result failed.
	FailedAt time.Time `json:"-"`
}

// Final tells whether the module is ready or failed for good.
func (s Status) Final() bool { return s.Status == StatusReady || s.Status == StatusFailed }
