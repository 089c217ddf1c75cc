package node

import (
	"context"
	"time"

	"github.com/wharfhq/wharf/store"
)

// Change feed timing: a change made through any node reaches every node
// within about feedPoll; the feed keeps feedRetain of history.
const (
	feedPoll      = 500 * time.Millisecond
	feedRetain    = 10 * time.Minute
	feedTrimEvery = time.Minute
	revalidateAge = 5 * time.Minute
)

// followChanges applies other nodes' changes to this node's caches: a
// function's new version, a deleted tenant. It starts from the feed's end
// (this node's caches are empty at start).
func (n *Node) followChanges(ctx context.Context) {
	var last int64
	for {
		var err error
		if last, err = n.st.LastChange(ctx); err == nil {
			break
		}
		n.log.Warn("change feed unavailable; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(feedPoll * 4):
		}
	}
	poll := time.NewTicker(feedPoll)
	defer poll.Stop()
	housekeeping := time.NewTicker(feedTrimEvery)
	defer housekeeping.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-housekeeping.C:
			if _, err := n.st.TrimChanges(ctx, time.Now().Add(-feedRetain)); err != nil {
				n.log.Debug("trim change feed", "err", err)
			}
			n.catalog.RevalidateOlderThan(revalidateAge)
		case <-poll.C:
			changes, err := n.st.ChangesSince(ctx, last, 1000)
			if err != nil {
				if !failing {
					n.log.Warn("change feed read failed; caches keep serving", "err", err)
				}
				failing = true
				continue
			}
			if failing {
				n.log.Info("change feed readable again")
				failing = false
			}
			last = n.apply(last, changes)
		}
	}
}

// apply applies changes after seq last and returns the new last seq. A gap
// (the node fell behind the feed's retained window) drops every cache entry.
func (n *Node) apply(last int64, changes []store.Change) int64 {
	if len(changes) == 0 {
		return last
	}
	if changes[0].Seq > last+1 {
		n.log.Warn("change feed gap: dropping the function cache", "from", last, "to", changes[0].Seq)
		n.catalog.InvalidateAll()
	}
	for _, c := range changes {
		switch c.Kind {
		case store.ChangeFunction:
			n.catalog.Refresh(c.Tenant, c.Name)
		case store.ChangeTenant:
			n.catalog.InvalidateTenant(c.Tenant)
			n.handler.DropTenant(c.Tenant)
		}
	}
	return changes[len(changes)-1].Seq
}

// record appends a change for the other nodes; this node already applied it.
func (n *Node) record(kind, tenant, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.st.AppendChange(ctx, kind, tenant, name); err != nil {
		// Other nodes see it at their periodic revalidation instead.
		n.log.Warn("record change for other nodes", "kind", kind, "tenant", tenant, "name", name, "err", err)
	}
}
