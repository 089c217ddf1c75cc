// Package buildnet is the network module builds run on: a Docker-internal
// bridge per node (no NAT, no traffic between containers) whose one way out
// is an HTTP proxy in the node, on the bridge's gateway address,
// that connects to the npm registry's host:port and nothing else; plus
// iptables rules (netpolicy's machinery) refusing everything else from the
// bridge to the host, and anything forwarded into or out of it.
//
// Why a proxy rather than firewall rules allowing DNS and 443 to public
// addresses: rules match addresses, not names, so they would let a build
// reach every HTTPS server on the internet (the registry sits behind a CDN
// shared with other sites), and they would need DNS, which Docker's embedded
// resolver forwards to the host's resolvers (often private addresses, e.g.
// 10.255.255.53 here). Behind the proxy npm resolves nothing, a registry on a
// private address (--npm-registry http://10.0.0.5:4873/) is allowed exactly
// and alone, and what a build can reach is one host:port whatever the
// registry's addresses are.
package buildnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/netpolicy"
)

// RoleNetwork is the wharf.role label of build networks.
const RoleNetwork = "build-network"

// RoleBuild is the wharf.role label of build containers (removed before a
// mismatched build network is replaced).
const RoleBuild = "build"

// watchInterval is how often the rules are checked and repaired.
const watchInterval = 30 * time.Second

// NetworkName is the build network of a node (or builder) id.
func NetworkName(id string) string { return "wharf-build-" + id }

// Config configures a build network.
type Config struct {
	// ID is the node's or builder's id: names and labels.
	ID string
	// Registry is the npm registry URL builds install from.
	Registry string
	// Firewall installs the iptables rules (root needed). Without them
	// Docker still drops what leaves the internal bridge, but build
	// containers can reach every service of the host itself.
	Firewall bool
}

// Net is a running build network.
type Net struct {
	name     string
	proxyURL string
	eng      engine.Engine
	srv      *http.Server
	proxy    *Proxy
	fw       *netpolicy.Firewall
	stop     context.CancelFunc
	bg       sync.WaitGroup
	log      *slog.Logger
}

// Start creates (or reuses) the build network, serves the registry proxy on
// its gateway and installs the rules. On error nothing of it is left.
func Start(ctx context.Context, eng engine.Engine, cfg Config, logger *slog.Logger) (_ *Net, err error) {
	log := logger.With("component", "buildnet")
	proxy, err := NewProxy(cfg.Registry, log)
	if err != nil {
		return nil, err
	}
	n := &Net{name: NetworkName(cfg.ID), eng: eng, proxy: proxy, log: log}
	names := netpolicy.BuildNamesFor(cfg.ID)
	if err := n.ensureNetwork(ctx, cfg.ID, names.Bridge); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.Close(context.WithoutCancel(ctx))
		}
	}()
	ninfo, err := eng.InspectNetwork(ctx, n.name)
	if err != nil {
		return nil, err
	}
	gwText := ninfo.Gateway
	gw, err := netip.ParseAddr(gwText)
	if err != nil {
		return nil, fmt.Errorf("build network gateway %q: %w", gwText, err)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(gw, 0).String())
	if err != nil {
		return nil, fmt.Errorf("build proxy: %w", err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	n.proxyURL = "http://" + addr.String()
	if cfg.Firewall {
		n.fw = netpolicy.New(netpolicy.Config{Names: names, Rules: func(fam netpolicy.Family, parent string) netpolicy.Ruleset {
			return netpolicy.BuildRules(names, addr, fam, parent)
		}}, log)
		if err := n.fw.Apply(ctx); err != nil {
			ln.Close()
			return nil, fmt.Errorf("build network firewall: %w (Wharf needs root and iptables to confine module builds; "+
				"--firewall=false runs without, see SECURITY.md)", err)
		}
	} else {
		log.Warn("--firewall=false: build containers reach the internet only through the registry proxy, " +
			"but can reach every service of the host itself (e.g. on " + gw.String() + ")")
	}
	n.srv = &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	wctx, stop := context.WithCancel(context.Background())
	n.stop = stop
	if n.fw != nil {
		n.bg.Go(func() { n.fw.Watch(wctx, watchInterval) })
	}
	n.bg.Go(func() {
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("build proxy stopped", "err", err)
		}
	})
	log.Info("build network ready", "network", n.name, "proxy", n.proxyURL, "registry", proxy.Target(), "firewall", cfg.Firewall)
	return n, nil
}

// ensureNetwork creates the internal, isolated bridge. One left with other
// options (an older Wharf) is replaced, after its build containers, which
// are leftovers of this id, are removed.
func (n *Net) ensureNetwork(ctx context.Context, id, bridge string) error {
	spec := engine.NetworkSpec{Name: n.name, Internal: true, Isolated: true, BridgeName: bridge,
		Labels: map[string]string{engine.LabelNode: id, engine.LabelRole: RoleNetwork}}
	_, err := n.eng.EnsureNetwork(ctx, spec)
	if !errors.Is(err, engine.ErrNetworkMismatch) {
		return err
	}
	n.log.Warn("replacing the build network", "reason", err)
	list, err := n.eng.ListContainers(ctx, map[string]string{engine.LabelNode: id, engine.LabelRole: RoleBuild})
	if err != nil {
		return err
	}
	for _, c := range list {
		if err := n.eng.RemoveContainer(ctx, c.ID); err != nil {
			return err
		}
	}
	if err := n.eng.RemoveNetwork(ctx, n.name); err != nil {
		return err
	}
	_, err = n.eng.EnsureNetwork(ctx, spec)
	return err
}

// Name is the Docker network build containers join.
func (n *Net) Name() string { return n.name }

// ProxyURL is the registry proxy as build containers reach it.
func (n *Net) ProxyURL() string { return n.proxyURL }

// Close stops the proxy and removes the network, then the rules: a bridge
// that cannot be removed (containers still on it) keeps them, so it is never
// unconfined while it exists. Build containers must be gone.
func (n *Net) Close(ctx context.Context) error {
	if n.stop != nil {
		n.stop()
		_ = n.srv.Close()
		n.bg.Wait()
	}
	n.proxy.CloseTunnels()
	if err := n.eng.RemoveNetwork(ctx, n.name); err != nil {
		return fmt.Errorf("%w (its firewall rules are kept until it is gone)", err)
	}
	if n.fw != nil {
		return n.fw.Remove(ctx)
	}
	return nil
}

// Remove removes what a build network of id left (a process killed before
// Close): the network and the rules. Its containers must be gone.
func Remove(ctx context.Context, eng engine.Engine, id string) error {
	errNet := eng.RemoveNetwork(ctx, NetworkName(id))
	names := netpolicy.BuildNamesFor(id)
	fw := netpolicy.New(netpolicy.Config{Names: names, Rules: func(fam netpolicy.Family, parent string) netpolicy.Ruleset {
		return netpolicy.BuildRules(names, netip.AddrPort{}, fam, parent)
	}}, slog.New(slog.DiscardHandler))
	return errors.Join(errNet, fw.Remove(ctx))
}
