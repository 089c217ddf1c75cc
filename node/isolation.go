package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wharfhq/wharf/config"
	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/limit"
	"github.com/wharfhq/wharf/netattach"
	"github.com/wharfhq/wharf/netpolicy"
	"github.com/wharfhq/wharf/sandbox"
)

// seccompProfile resolves --seccomp-profile to the JSON handed to the engine
// ("" keeps the engine's default).
func seccompProfile(setting string) (string, error) {
	switch setting {
	case "":
		return sandbox.SeccompProfile(), nil
	case config.SeccompEngineDefault:
		return "", nil
	}
	b, err := os.ReadFile(setting)
	if err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	var probe struct {
		DefaultAction string `json:"defaultAction"`
	}
	if err := json.Unmarshal(b, &probe); err != nil || probe.DefaultAction == "" {
		return "", fmt.Errorf("seccomp profile %s is not a seccomp profile (JSON with a defaultAction)", setting)
	}
	return string(b), nil
}

// startFirewall installs the node's iptables rules before any container
// starts and registers their removal, which runs after every container and
// the network are gone (closers run in reverse order of registration).
func (n *Node) startFirewall(ctx context.Context) error {
	names := netpolicy.NamesFor(n.id)
	if !n.cfg.Firewall {
		n.log.Warn("--firewall=false: tenant containers can reach each other's ports only if the engine allows it, " +
			"and the host, its Docker API and link-local metadata addresses unless another firewall stops them")
		return nil
	}
	deny, err := netpolicy.ParseDeny(n.cfg.EgressDeny)
	if err != nil {
		return err
	}
	n.firewall = netpolicy.New(netpolicy.Config{Names: names, Policy: netpolicy.Policy{Egress: n.cfg.Egress, Deny: deny}}, n.log)
	if err := n.firewall.Apply(ctx); err != nil {
		_ = n.firewall.Remove(context.WithoutCancel(ctx))
		return fmt.Errorf("firewall: %w (Wharf needs root and iptables to confine tenant containers; "+
			"--firewall=false runs without, see SECURITY.md)", err)
	}
	n.onStop(func(ctx context.Context) {
		if err := n.firewall.Remove(ctx); err != nil {
			n.log.Warn("remove firewall rules", "err", err)
		}
	})
	return nil
}

// ensureNetwork creates the node's bridge with its known interface name. A
// network of the same name with other options (left by an older Wharf) is
// replaced: its containers are this node's leftovers, which the start
// removes or adopts anyway, and adopting them onto an unconfined bridge
// would be wrong.
func (n *Node) ensureNetwork(ctx context.Context) error {
	spec := engine.NetworkSpec{
		Name: n.network, Isolated: true, BridgeName: netpolicy.NamesFor(n.id).Bridge,
		Labels: map[string]string{engine.LabelNode: n.id, engine.LabelRole: "network"},
	}
	_, err := n.eng.EnsureNetwork(ctx, spec)
	if errors.Is(err, engine.ErrNetworkMismatch) {
		n.log.Warn("replacing the node's network", "reason", err)
		n.sweep(ctx)
		if err := n.eng.RemoveNetwork(ctx, n.network); err != nil {
			return err
		}
		_, err = n.eng.EnsureNetwork(ctx, spec)
	}
	return err
}

// attachNetwork decides who connects tenant containers to the node's bridge
// (--container-network) and, when it is Wharf, puts netattach between the
// node and the engine: containers of the node's network are then created
// without the engine's network set-up and plumbed by the node.
func (n *Node) attachNetwork(ctx context.Context) error {
	mode := n.cfg.ContainerNetwork
	if mode == config.ContainerNetworkAuto || mode == "" {
		mode = config.ContainerNetworkWharf
		if err := netattach.Supported(); err != nil {
			n.log.Info("the engine connects tenant containers", "reason", err)
			mode = config.ContainerNetworkEngine
		}
	}
	if mode == config.ContainerNetworkEngine {
		return nil
	}
	if err := netattach.Supported(); err != nil {
		return fmt.Errorf("--container-network=wharf: %w", err)
	}
	eng, err := netattach.New(ctx, n.eng, netattach.Config{
		Network: n.network, Labels: map[string]string{engine.LabelNode: n.id},
		Dir: filepath.Join(n.cfg.DataDir, "network"),
	})
	if err != nil {
		return fmt.Errorf("container network: %w", err)
	}
	n.eng = eng
	return nil
}

// tenantLimiter is the per-tenant in-flight limit of the proxy.
func (n *Node) tenantLimiter() *limit.Tenants {
	return limit.New(limit.Config{
		MaxInflight: n.cfg.TenantConcurrency, MaxQueue: n.cfg.TenantQueue, QueueWait: n.cfg.TenantQueueTimeout,
	})
}
