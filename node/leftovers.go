package node

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/wharfhq/wharf/buildnet"
	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/netpolicy"
)

// NetworkName is the container network of a node id.
func NetworkName(nodeID string) string { return "wharf-" + nodeID }

// RemoveObjects force-removes every container, the networks (tenants' and
// builds') and the firewall rules of a node or builder id that is not
// running (one killed and never started again leaves all of them). It repeats until two listings a moment apart are
// empty, because a create sent just before the node died can complete later.
func RemoveObjects(ctx context.Context, nodeID string) error {
	eng, err := engine.NewDocker()
	if err != nil {
		return err
	}
	defer eng.Close()
	for empty := 0; empty < 2; {
		list, err := eng.ListContainers(ctx, map[string]string{engine.LabelNode: nodeID})
		if err != nil {
			return err
		}
		if len(list) == 0 {
			empty++
		} else {
			empty = 0
		}
		for _, c := range list {
			if err := eng.RemoveContainer(ctx, c.ID); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	if err := eng.RemoveNetwork(ctx, NetworkName(nodeID)); err != nil {
		return err
	}
	if err := buildnet.Remove(ctx, eng, nodeID); err != nil {
		return err
	}
	fw := netpolicy.New(netpolicy.Config{Names: netpolicy.NamesFor(nodeID)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return fw.Remove(ctx)
}
