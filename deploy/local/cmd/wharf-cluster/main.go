// Command wharf-cluster starts and removes a local Wharf cluster: `wharf
// store`, Wharf nodes in containers and HAProxy in front of them, all on this
// machine's Docker engine (`make cluster`, `make cluster-down`).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/wharfhq/wharf/deploy/local/cluster"
)

const usage = `wharf-cluster — a local Wharf cluster (store, nodes, HAProxy) on this Docker engine

Usage:
  wharf-cluster up [flags]      build the images and start the cluster
  wharf-cluster down [--name N] drain the nodes and remove everything the cluster created
  wharf-cluster status [--name N]
`

func main() {
	// The cluster must outlive this process: no reaper. (Its image cannot be
	// pulled here either.)
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, os.Args[2:])
	case "down":
		err = down(ctx, os.Args[2:])
	case "status":
		err = status(ctx, os.Args[2:])
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wharf-cluster %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

const defaultBase = "/var/lib/wharf-local"

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	name := fs.String("name", "local", "cluster name (containers wharfc-<name>-*, node ids <name>-n<i>)")
	root := fs.String("data-root", "", "data of the store and the nodes (default "+defaultBase+"/<name>)")
	listen := fs.String("listen", "127.0.0.1:9080", "load balancer address")
	stats := fs.String("stats", "127.0.0.1:9081", "HAProxy stats page and /metrics")
	nodes := fs.Int("nodes", 2, "Wharf nodes")
	pool := fs.Int("pool-size", 2, "warm containers per node")
	affinity := fs.Bool("tenant-affinity", false, "route each tenant to one node (consistent hashing) instead of round robin")
	verbose := fs.Bool("v", false, "print build output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *root == "" {
		*root = filepath.Join(defaultBase, *name)
	}
	logw := io.Writer(progress{})
	if *verbose {
		logw = os.Stderr
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	opts := []cluster.Option{cluster.WithName(*name), cluster.WithDataRoot(*root), cluster.WithNodes(*nodes),
		cluster.WithListen(*listen, *stats), cluster.WithLog(logw),
		cluster.WithNodeEnv(map[string]string{"WHARF_POOL_SIZE": fmt.Sprint(*pool)})}
	if *affinity {
		opts = append(opts, cluster.WithTenantAffinity())
	}
	c, err := cluster.Run(ctx, opts...)
	if err != nil {
		if c != nil {
			fmt.Fprintln(os.Stderr, "start failed; removing what was started")
			dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer dcancel()
			if derr := c.Terminate(dctx); derr != nil {
				fmt.Fprintln(os.Stderr, "cleanup:", derr)
			}
		}
		return err
	}
	fmt.Printf(`Wharf cluster %q is up.

  load balancer  %s   (HAProxy, health check GET /readyz)
  stats          %s   (and Prometheus at /metrics)
  store          %s
`, c.Name, c.URL, c.StatsURL, c.StoreURI)
	for _, n := range c.Nodes() {
		fmt.Printf("  node %-9s %s\n", n.ID, n.URL)
	}
	fmt.Printf(`  data           %s  (settings in cluster.env)

Admin token (all nodes share it):
  export WHARF_ADMIN_TOKEN=%s
Try it:
  TENANT_TOKEN=$(curl -s -X POST %s/api/v1/tenants -H "Authorization: Bearer $WHARF_ADMIN_TOKEN" \
      -d '{"name":"acme"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  curl -s -X PUT %s/api/v1/tenants/acme/functions/hello -H "Authorization: Bearer $TENANT_TOKEN" \
      -d '{"code":"module.exports = function (ctx, cb) { cb(null, {hello: ctx.query.name || \"world\", host: require(\"os\").hostname()}) }"}'
  curl -s '%s/run/acme/hello?name=wharf'

Remove it all with: %s
`, c.DataRoot, c.AdminToken, c.URL, c.URL, c.URL, downCommand(c.Name))
	return nil
}

func down(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	name := fs.String("name", "local", "cluster name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := cluster.Down(ctx, *name, "", os.Stdout); err != nil {
		return err
	}
	// A start that failed before any container existed leaves only its data root.
	return cluster.RemoveDataRoot(filepath.Join(defaultBase, *name), *name)
}

func status(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	name := fs.String("name", "local", "cluster name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer docker.Close()
	list, err := docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", cluster.LabelCluster+"="+*name))})
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Printf("no cluster %q on this engine\n", *name)
		return nil
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Names[0] < list[j].Names[0] })
	root := ""
	for _, c := range list {
		fmt.Printf("%-28s %-6s %s\n", strings.TrimPrefix(c.Names[0], "/"), c.Labels[cluster.LabelRole], c.Status)
		root = c.Labels[cluster.LabelData]
	}
	env := readEnv(filepath.Join(root, "cluster.env"))
	if statsURL := env["WHARF_LB_STATS"]; statsURL != "" {
		if servers, err := cluster.ServersAt(ctx, statsURL); err == nil {
			fmt.Println("\nHAProxy:")
			for id, s := range servers {
				fmt.Printf("  %-14s %-8s check %-6s requests %d retries %d redispatched %d\n",
					id, s.Status, s.CheckStatus, s.Sessions, s.Retries, s.Redispatch)
			}
		}
	}
	if u := env["WHARF_URL"]; u != "" {
		fmt.Printf("\nURL %s; admin token in %s\n", u, filepath.Join(root, "cluster.env"))
	}
	return nil
}

func readEnv(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out
}

// progress prints the cluster's own progress lines, not build output.
type progress struct{}

func (progress) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if strings.HasPrefix(line, "cluster ") {
			fmt.Fprintln(os.Stderr, line)
		}
	}
	return len(p), nil
}

func downCommand(name string) string {
	if name == "local" {
		return "make cluster-down"
	}
	return fmt.Sprintf("make cluster-down ARGS=\"-name %s\"", name)
}
