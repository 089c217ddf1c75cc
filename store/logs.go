package store

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// CollLogs holds the recent output of tenants' functions, in chunks.
const CollLogs = "logs"

// LogLine is one line of a tenant function's output.
type LogLine struct {
	Time      time.Time `bson:"t" json:"time"`
	Function  string    `bson:"fn" json:"function"`    // "" when the line carried no tag
	RequestID string    `bson:"rid" json:"request_id"` // "" when the line carried no tag
	Level     string    `bson:"lvl" json:"level"`
	Message   string    `bson:"msg" json:"message"`
}

// LogChunk is what one node flushed of one tenant's output at once. Chunks
// are only ever inserted and deleted, never updated, so several nodes write
// and trim the same tenant's history without coordination (FerretDB updates
// are not atomic across connections). One document per flush rather than per
// line keeps the collection small, which matters because FerretDB scans it
// whole for every query.
type LogChunk struct {
	ID        string    `bson:"_id"`
	Tenant    string    `bson:"tenant"`
	TenantUID string    `bson:"tenant_uid"`
	Node      string    `bson:"node"`
	At        time.Time `bson:"at"`    // when the node flushed it; orders chunks
	Count     int       `bson:"n"`     // len(Lines), kept for trimming without reading lines
	Bytes     int       `bson:"bytes"` // sum of the messages' lengths
	Lines     []LogLine `bson:"lines"`
}

func (s *Store) logs() *mongo.Collection { return s.db.Collection(CollLogs) }

// chunkSeq orders the chunks this process writes within one nanosecond.
var chunkSeq atomic.Uint32

// chunkID is a chunk's _id, which orders chunks with equal "at": a BSON date
// holds milliseconds only, and a node may flush one tenant's output twice in
// a millisecond. The flush time in nanoseconds, then this process's sequence,
// then random bytes (for other nodes); fixed-width hex, so the strings sort as
// the numbers do. With random ids the newest lines of a history (?tail=) were
// sometimes an older chunk's.
func chunkID(at time.Time) string {
	return fmt.Sprintf("%016x%08x%s", uint64(at.UnixNano()), chunkSeq.Add(1), randomHex(4))
}

// AppendLogs stores a chunk of a tenant's output. ID, At, Count and Bytes are
// filled when empty.
func (s *Store) AppendLogs(ctx context.Context, c LogChunk) error {
	if err := checkName("tenant", c.Tenant); err != nil {
		return err
	}
	if len(c.Lines) == 0 {
		return nil
	}
	if c.At.IsZero() {
		c.At = time.Now().UTC()
	}
	if c.ID == "" {
		c.ID = chunkID(c.At)
	}
	c.Count, c.Bytes = len(c.Lines), 0
	for i := range c.Lines {
		c.Lines[i].Time = c.Lines[i].Time.UTC().Truncate(time.Millisecond)
		c.Bytes += len(c.Lines[i].Message)
	}
	if _, err := s.logs().InsertOne(ctx, c); err != nil {
		return fmt.Errorf("store: append logs of tenant %q: %w", c.Tenant, err)
	}
	return nil
}

// LogQuery selects lines of one tenant incarnation.
type LogQuery struct {
	Tenant    string
	TenantUID string
	Function  string // "" for every function; system lines always match
	Limit     int    // newest lines wanted; <= 0 means none
}

// RecentLogs returns the newest q.Limit lines of a tenant (of one function
// when q.Function is set), oldest first.
func (s *Store) RecentLogs(ctx context.Context, q LogQuery) ([]LogLine, error) {
	if q.Limit <= 0 {
		return []LogLine{}, nil
	}
	cur, err := s.logs().Find(ctx, tenantLogs(q.Tenant, q.TenantUID),
		options.Find().SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}}))
	if err != nil {
		return nil, fmt.Errorf("store: recent logs of tenant %q: %w", q.Tenant, err)
	}
	defer cur.Close(ctx)
	var out []LogLine
	for cur.Next(ctx) && len(out) < q.Limit {
		var c LogChunk
		if err := cur.Decode(&c); err != nil {
			return nil, fmt.Errorf("store: recent logs of tenant %q: %w", q.Tenant, err)
		}
		for i := len(c.Lines) - 1; i >= 0 && len(out) < q.Limit; i-- {
			if LogLineMatches(c.Lines[i], q.Function) {
				out = append(out, c.Lines[i])
			}
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("store: recent logs of tenant %q: %w", q.Tenant, err)
	}
	slices.Reverse(out)
	// Chunks of several nodes interleave: order by the lines' own times,
	// keeping each node's order for equal times.
	slices.SortStableFunc(out, func(a, b LogLine) int { return a.Time.Compare(b.Time) })
	if out == nil {
		out = []LogLine{}
	}
	return out, nil
}

// LogLineMatches tells whether a line belongs in a view of one function
// ("" = every function). System lines (dropped-line notices) concern every view.
func LogLineMatches(l LogLine, function string) bool {
	return function == "" || l.Function == function || l.Level == "system"
}

// LogChunksSince returns a tenant's chunks flushed at or after since by
// nodes other than exceptNode, oldest first: how a node streams the output
// its peers' containers produce.
func (s *Store) LogChunksSince(ctx context.Context, tenant, uid string, since time.Time, exceptNode string) ([]LogChunk, error) {
	f := append(tenantLogs(tenant, uid),
		bson.E{Key: "at", Value: bson.D{{Key: "$gte", Value: since}}},
		bson.E{Key: "node", Value: bson.D{{Key: "$ne", Value: exceptNode}}})
	cur, err := s.logs().Find(ctx, f, options.Find().SetSort(bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: log chunks of tenant %q: %w", tenant, err)
	}
	out := []LogChunk{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("store: log chunks of tenant %q: %w", tenant, err)
	}
	return out, nil
}

// LogLimits bound a tenant's history.
type LogLimits struct {
	Lines  int // newest lines kept (whole chunks: up to one chunk more)
	Bytes  int // newest message bytes kept, likewise
	Chunks int // newest chunks kept
}

// TrimLogs deletes a tenant's oldest chunks beyond the limits and returns
// how many it deleted. Concurrent trims by several nodes only delete the
// same old chunks twice, which is harmless.
func (s *Store) TrimLogs(ctx context.Context, tenant string, lim LogLimits) (int, error) {
	cur, err := s.logs().Find(ctx, bson.D{{Key: "tenant", Value: tenant}}, options.Find().
		SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}}).
		SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 1}, {Key: "bytes", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("store: trim logs of tenant %q: %w", tenant, err)
	}
	var heads []LogChunk
	if err := cur.All(ctx, &heads); err != nil {
		return 0, fmt.Errorf("store: trim logs of tenant %q: %w", tenant, err)
	}
	old := chunksBeyond(heads, lim)
	if len(old) == 0 {
		return 0, nil
	}
	res, err := s.logs().DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: old}}}})
	if err != nil {
		return 0, fmt.Errorf("store: trim logs of tenant %q: %w", tenant, err)
	}
	return int(res.DeletedCount), nil
}

// chunksBeyond returns the ids of the chunks (newest first) past the limits:
// a chunk is kept while the newer ones hold fewer lines, bytes and chunks
// than allowed.
func chunksBeyond(newestFirst []LogChunk, lim LogLimits) []string {
	var lines, bytes int
	var old []string
	for i, c := range newestFirst {
		if i >= lim.Chunks || lines >= lim.Lines || bytes >= lim.Bytes {
			old = append(old, c.ID)
			continue
		}
		lines += c.Count
		bytes += c.Bytes
	}
	return old
}

// ExpireLogs deletes every chunk flushed before `before`, of every tenant.
func (s *Store) ExpireLogs(ctx context.Context, before time.Time) (int, error) {
	res, err := s.logs().DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: before}}}})
	if err != nil {
		return 0, fmt.Errorf("store: expire logs: %w", err)
	}
	return int(res.DeletedCount), nil
}

func tenantLogs(tenant, uid string) bson.D {
	return bson.D{{Key: "tenant", Value: tenant}, {Key: "tenant_uid", Value: uid}}
}
