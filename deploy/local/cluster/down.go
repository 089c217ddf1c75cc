package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/wharfhq/wharf/node"
)

// drainTimeout bounds a node's SIGTERM drain at Down (its default
// --shutdown-timeout is 30 s).
const drainTimeout = 40 * time.Second

// Down removes cluster name from this engine, whether or not the process that
// started it is still around: its nodes drain (SIGTERM) in parallel, then
// every container and network of its nodes (label wharf.node), its own
// containers, and its data root go. dataRoot "" takes the root from the
// containers' labels; a root is deleted only if it holds the marker file a
// cluster of this name wrote.
func Down(ctx context.Context, name, dataRoot string, log io.Writer) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if log == nil {
		log = io.Discard
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer docker.Close()
	ctrs, err := listCluster(ctx, docker, name)
	if err != nil {
		return err
	}
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	nodeIDs := map[string]bool{}
	for _, c := range ctrs {
		if dataRoot == "" {
			dataRoot = c.Labels[LabelData]
		}
		if c.Labels[LabelRole] != RoleNode {
			continue
		}
		nodeIDs[c.Labels[LabelNodeID]] = true
		if c.State != "running" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			secs := int(drainTimeout.Seconds())
			fmt.Fprintf(log, "cluster %s: draining node %s\n", name, c.Labels[LabelNodeID])
			if err := docker.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &secs}); err != nil && !errdefs.IsNotFound(err) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("stop node %s: %w", c.Labels[LabelNodeID], err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for id := range nodeIDs {
		if id == "" {
			continue
		}
		if err := removeNodeObjects(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("node %s leftovers: %w", id, err))
		}
	}
	for _, c := range ctrs {
		err := docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !errdefs.IsNotFound(err) && !strings.Contains(err.Error(), "is already in progress") {
			errs = append(errs, fmt.Errorf("remove %s: %w", strings.Join(c.Names, ","), err))
		}
	}
	if dataRoot != "" {
		if err := RemoveDataRoot(dataRoot, name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(ctrs) > 0 {
		fmt.Fprintf(log, "cluster %s: removed %d containers\n", name, len(ctrs))
	}
	return errors.Join(errs...)
}

func listCluster(ctx context.Context, docker *client.Client, name string) ([]container.Summary, error) {
	return docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelCluster+"="+name))})
}

// removeNodeObjects removes what a node id left on the engine and host.
func removeNodeObjects(ctx context.Context, nodeID string) error {
	return node.RemoveObjects(ctx, nodeID)
}

// RemoveDataRoot deletes a cluster's data root, only if it holds the marker
// file cluster name wrote there; a missing root is not an error.
func RemoveDataRoot(root, name string) error {
	b, err := os.ReadFile(filepath.Join(root, markerFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(root); errors.Is(serr, os.ErrNotExist) {
			return nil // already gone
		}
		return fmt.Errorf("not deleting %s: it has no %s marker", root, markerFile)
	}
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) != name {
		return fmt.Errorf("not deleting %s: it belongs to cluster %q", root, strings.TrimSpace(string(b)))
	}
	return os.RemoveAll(root)
}

// CleanupCluster registers, at once (call it before checking Run's error),
// the removal of everything the cluster created; on failure it logs the
// nodes' and the load balancer's log tails first.
func CleanupCluster(tb testing.TB, c *Cluster) {
	tb.Helper()
	if c == nil {
		return
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if tb.Failed() {
			for _, n := range c.nodes {
				if n.ctr != nil {
					tb.Logf("node %s:%s", n.ID, n.Logs(ctx))
				}
			}
			if c.lb != nil {
				tb.Logf("haproxy:%s", c.LBLogs(ctx))
			}
		}
		if err := c.Terminate(ctx); err != nil {
			tb.Errorf("cluster cleanup: %v", err)
		}
	})
}
