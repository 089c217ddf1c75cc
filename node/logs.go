package node

import (
	"time"

	"github.com/wharfhq/wharf/pool"
	"github.com/wharfhq/wharf/tenantlog"
)

// startLogs starts the service that follows tenant containers' output,
// streams it to the logs endpoint and keeps its history in the store. It
// stops after the handler (whose containers it follows) and before the store.
func (n *Node) startLogs() {
	history := n.cfg.LogHistoryLines
	if history == 0 {
		history = -1 // --log-history-lines 0: live streams only
	}
	n.logs = tenantlog.New(tenantlog.Config{
		NodeID: n.id, Rate: n.cfg.LogRate, HistoryLines: history, HistoryAge: n.cfg.LogHistoryAge,
		FollowDelay: n.cfg.LogFollowDelay,
	}, n.st, n.eng, n.log)
	n.onStop(n.logs.Close)
}

// containerAssigned follows a container's output from the moment a tenant
// claimed it: everything it prints from then on is that tenant's.
func (n *Node) containerAssigned(tenant string, c *pool.Container, since time.Time) {
	n.logs.Follow(tenant, c.ID, since)
}
