package builder

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/images"
	"github.com/wharfhq/wharf/npmspec"
)

// RoleBuild is the wharf.role label of build containers.
const RoleBuild = "build"

// LabelModule names the module a build container builds.
const LabelModule = "wharf.module"

// Paths inside a build container.
const (
	outMount = "/out"     // the host's output directory, the only writable bind mount
	npmCache = "/tmp/npm" // on the tmpfs
)

// npmArgs is the npm command line of one build. --ignore-scripts: the image
// has no shell for lifecycle scripts, and a module's install scripts are
// arbitrary code that would run with registry access; modules that need a
// native build step (node-gyp) are therefore not supported. Peer dependencies
// are installed (npm's default since v7), so a plugin declared alone works;
// a function declaring the host too gets the plugin linked to its own copy by
// the module cache.
// With a proxy (the build network's), npm reaches the registry only through
// it: a CONNECT to the registry's host:port, no DNS of its own.
func npmArgs(registry, proxy string, r npmspec.Ref) []string {
	args := []string{
		images.NPMPath, "install", r.String(),
		"--prefix", outMount,
		"--no-save", "--no-package-lock",
		"--ignore-scripts",
		"--no-update-notifier", "--no-fund", "--no-audit",
		"--registry", registry,
		"--cache", npmCache,
	}
	if proxy != "" {
		args = append(args, "--proxy", proxy, "--https-proxy", proxy)
	}
	return args
}

// Spec returns the hardened spec of the throwaway container that builds r
// with npm into outDir (a host directory). It runs the runtime image, so
// modules are built by the same node that runs them. The network is the
// node's build network (buildnet: the registry proxy and nothing else),
// never the tenants' network.
func Spec(cfg Config, name string, r npmspec.Ref, outDir string) engine.ContainerSpec {
	return engine.ContainerSpec{
		Name:       name,
		Image:      cfg.Image,
		Entrypoint: []string{images.NodePath},
		Cmd:        npmArgs(cfg.Registry, cfg.Proxy, r),
		Env: []string{
			"HOME=/tmp",
			"NODE_EXTRA_CA_CERTS=" + images.CABundlePath,
			"npm_config_update_notifier=false",
			"NODE_ENV=production",
		},
		User:       fmt.Sprintf("%d:%d", images.UID, images.UID),
		WorkingDir: "/tmp",
		Labels: map[string]string{
			engine.LabelNode: cfg.ID,
			engine.LabelRole: RoleBuild,
			LabelModule:      r.String(),
		},
		Network:      cfg.Network,
		Mounts:       []engine.Mount{{Source: outDir, Target: outMount}},
		Tmpfs:        map[string]string{"/tmp": fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d,mode=1777", cfg.Tmpfs)},
		ReadOnlyRoot: true,
		CapDrop:      []string{"ALL"},
		SecurityOpt:  []string{"no-new-privileges"},
		MemoryBytes:  cfg.Memory,
		NanoCPUs:     cfg.NanoCPUs,
		PidsLimit:    cfg.Pids,
		NoFile:       4096,
		Runtime:      cfg.Runtime,
	}
}

// ValidateRegistry checks a registry URL given on the command line.
func ValidateRegistry(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("npm registry %q must be an http(s) URL such as https://registry.npmjs.org/", s)
	}
	if strings.ContainsAny(s, " \t\n") {
		return fmt.Errorf("npm registry %q must not contain white space", s)
	}
	return nil
}
