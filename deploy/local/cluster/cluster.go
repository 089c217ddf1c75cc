// Package cluster runs a Wharf cluster on this machine's Docker engine, in
// the testcontainers module style: Run(ctx, opts...) starts `wharf store`,
// N Wharf nodes and HAProxy in front of them, each in a container built
// locally FROM scratch (no registry), and returns a Cluster with the load
// balancer's URL, the admin token and a handle per node (Stop, Kill, Start).
// `make cluster` and the integration suite both use it.
//
// Every container runs on the host's network: a node's proxy dials its
// tenant containers' bridge IPs, which only the host's network namespace
// reaches, and the nodes, the store and HAProxy then meet on loopback. A node
// drives the host's Docker engine through the mounted socket and sees its data
// directory at the same path as the host does, so the bind mounts it asks
// Docker for (function code, modules) resolve on the host.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/images"
)

// Cluster is a running local cluster.
type Cluster struct {
	Name       string
	URL        string // the load balancer: http://127.0.0.1:port
	StatsURL   string // HAProxy's stats page (append ";csv" for CSV)
	AdminToken string
	SecretsKey string
	StoreURI   string // mongodb://127.0.0.1:port/
	DataRoot   string

	RuntimeImage string // what the nodes run tenant code in
	WharfImage   string
	LBImage      string

	nodes  []*Node
	store  testcontainers.Container
	lb     testcontainers.Container
	docker *client.Client
	opts   options
}

// Node is one Wharf node container.
type Node struct {
	ID  string
	URL string // straight to the node, bypassing the load balancer

	c       *Cluster
	ctr     testcontainers.Container
	dataDir string
}

type options struct {
	name         string
	nodes        int
	dataRoot     string
	adminToken   string
	secretsKey   string
	check        HealthCheck
	nodeEnv      map[string]string
	listen       string
	statsListen  string
	sourceDir    string
	runtimeImage string
	log          io.Writer
	readyTimeout time.Duration
	affinity     bool
}

// Option customises Run.
type Option func(*options)

// WithName names the cluster (containers, node ids "<name>-n<i>"); default a random one.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithNodes sets the number of Wharf nodes (default 2).
func WithNodes(n int) Option { return func(o *options) { o.nodes = n } }

// WithDataRoot puts the store's and the nodes' data under dir (default a new
// temporary directory). Down deletes it.
func WithDataRoot(dir string) Option { return func(o *options) { o.dataRoot = dir } }

// WithAdminToken sets the shared admin token (default: a random one).
func WithAdminToken(tok string) Option { return func(o *options) { o.adminToken = tok } }

// WithSecretsKey sets the shared secrets key, 64 hex digits (default: random).
func WithSecretsKey(key string) Option { return func(o *options) { o.secretsKey = key } }

// WithHealthCheck sets HAProxy's /readyz check (default DefaultHealthCheck).
func WithHealthCheck(h HealthCheck) Option { return func(o *options) { o.check = h } }

// WithNodeEnv adds WHARF_* settings to every node (e.g. WHARF_POOL_SIZE).
func WithNodeEnv(env map[string]string) Option {
	return func(o *options) {
		for k, v := range env {
			o.nodeEnv[k] = v
		}
	}
}

// WithListen sets the load balancer's and its stats page's addresses
// (default: free loopback ports).
func WithListen(lb, stats string) Option {
	return func(o *options) { o.listen, o.statsListen = lb, stats }
}

// WithSourceDir builds the Wharf image from this source tree (default: the
// one this package was compiled from).
func WithSourceDir(dir string) Option { return func(o *options) { o.sourceDir = dir } }

// WithRuntimeImage makes the nodes run tenant code in an existing image
// instead of the FROM-scratch runtime image built from this host's node.
func WithRuntimeImage(tag string) Option { return func(o *options) { o.runtimeImage = tag } }

// WithTenantAffinity has HAProxy route each tenant to one node (consistent
// hashing) instead of round robin.
func WithTenantAffinity() Option { return func(o *options) { o.affinity = true } }

// WithLog receives progress lines and build output (default: discarded).
func WithLog(w io.Writer) Option { return func(o *options) { o.log = w } }

// Run builds the images and starts the cluster. On error it still returns
// what it started, so that the caller's cleanup (registered at once, see
// CleanupCluster) removes it.
func Run(ctx context.Context, opts ...Option) (*Cluster, error) {
	o := options{nodes: 2, check: DefaultHealthCheck, nodeEnv: map[string]string{}, log: io.Discard,
		readyTimeout: 2 * time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	if o.name == "" {
		o.name = "wc" + randHex(3)
	}
	if err := ValidName(o.name); err != nil {
		return nil, err
	}
	if o.nodes < 1 || o.nodes > 9 {
		return nil, fmt.Errorf("cluster: %d nodes; want 1 to 9", o.nodes)
	}
	if o.adminToken == "" {
		o.adminToken = "wha_" + randHex(20)
	}
	if o.secretsKey == "" {
		o.secretsKey = randHex(32)
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	existing, err := listCluster(ctx, docker, o.name)
	if err != nil {
		docker.Close()
		return nil, err
	}
	if len(existing) > 0 {
		docker.Close()
		return nil, fmt.Errorf("cluster %s exists already (%d containers): remove it first (make cluster-down)", o.name, len(existing))
	}
	c := &Cluster{Name: o.name, AdminToken: o.adminToken, SecretsKey: o.secretsKey, docker: docker, opts: o}
	if err := c.prepareDataRoot(); err != nil {
		return c, err
	}
	if err := c.buildImages(ctx); err != nil {
		return c, err
	}
	ports, err := freePorts(2 + o.nodes)
	if err != nil {
		return c, err
	}
	if o.listen == "" {
		o.listen = "127.0.0.1:" + strconv.Itoa(ports[0])
	}
	if o.statsListen == "" {
		o.statsListen = "127.0.0.1:" + strconv.Itoa(ports[1])
	}
	c.opts = o
	c.URL, c.StatsURL = "http://"+o.listen, "http://"+o.statsListen+"/stats"

	c.logf("starting wharf store")
	storeAddr := "127.0.0.1:" + strconv.Itoa(ports[2])
	c.StoreURI = "mongodb://" + storeAddr + "/"
	if err := c.startStore(ctx, storeAddr); err != nil {
		return c, err
	}
	nodePorts, err := freePorts(o.nodes)
	if err != nil {
		return c, err
	}
	for i := 1; i <= o.nodes; i++ {
		id := NodeID(o.name, i)
		c.nodes = append(c.nodes, &Node{ID: id, c: c, URL: "http://127.0.0.1:" + strconv.Itoa(nodePorts[i-1]),
			dataDir: filepath.Join(c.DataRoot, id)})
	}
	// Nodes start in parallel: each builds its pool of warm containers.
	c.logf("starting %d nodes", o.nodes)
	errc := make(chan error, len(c.nodes))
	var mu sync.Mutex
	for _, n := range c.nodes {
		go func() {
			ctr, err := c.createNode(ctx, n)
			mu.Lock()
			n.ctr = ctr
			mu.Unlock()
			errc <- err
		}()
	}
	var startErrs []error
	for range c.nodes {
		if err := <-errc; err != nil {
			startErrs = append(startErrs, err)
		}
	}
	if err := errors.Join(startErrs...); err != nil {
		return c, err
	}
	c.logf("starting haproxy")
	if err := c.startLB(ctx); err != nil {
		return c, err
	}
	if err := c.WaitAllUp(ctx, o.readyTimeout); err != nil {
		return c, err
	}
	return c, c.writeEnvFile()
}

// Node returns the i-th node, from 0.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Nodes returns every node.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Terminate removes the cluster: nodes drain (SIGTERM), then every container
// of the cluster and of its nodes, the nodes' networks and the data root go.
func (c *Cluster) Terminate(ctx context.Context) error {
	if c == nil {
		return nil
	}
	err := Down(ctx, c.Name, c.DataRoot, c.opts.log)
	if c.docker != nil {
		c.docker.Close()
	}
	return err
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.opts.log, "cluster %s: "+format+"\n", append([]any{c.Name}, args...)...)
}

func (c *Cluster) prepareDataRoot() error {
	root := c.opts.dataRoot
	if root == "" {
		dir, err := os.MkdirTemp("", "wharf-cluster-"+c.Name+"-")
		if err != nil {
			return err
		}
		root = dir
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("data root: %w", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("data root %s is not empty: remove it or choose another", root)
	}
	c.DataRoot = root
	return os.WriteFile(filepath.Join(root, markerFile), []byte(c.Name+"\n"), 0o600)
}

func (c *Cluster) buildImages(ctx context.Context) error {
	if c.opts.runtimeImage != "" {
		c.RuntimeImage = c.opts.runtimeImage
	} else {
		c.logf("ensuring the runtime image (FROM scratch, from this host's node)")
		eng, err := engine.NewDocker()
		if err != nil {
			return err
		}
		img, err := images.Ensure(ctx, eng, images.Options{}, slog.New(slog.NewTextHandler(c.opts.log, nil)))
		eng.Close()
		if err != nil {
			return err
		}
		c.RuntimeImage = img.Tag
	}
	src := c.opts.sourceDir
	if src == "" {
		var err error
		if src, err = SourceDir(); err != nil {
			return err
		}
	}
	c.logf("building the static wharf binary from %s", src)
	binDir, err := os.MkdirTemp("", "wharf-cluster-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	bin := filepath.Join(binDir, "wharf")
	if err := BuildStaticWharf(ctx, src, bin); err != nil {
		return err
	}
	tarBytes, hash, err := WharfImageContext(bin)
	if err != nil {
		return err
	}
	if c.WharfImage, err = buildImage(ctx, c.docker, WharfRepo, tarBytes, hash, c.opts.log); err != nil {
		return err
	}
	haproxy, err := EnsureHAProxy(ctx, c.opts.log)
	if err != nil {
		return err
	}
	if tarBytes, hash, err = HAProxyImageContext(haproxy); err != nil {
		return err
	}
	c.LBImage, err = buildImage(ctx, c.docker, HAProxyRepo, tarBytes, hash, c.opts.log)
	c.logf("images: node %s, load balancer %s, runtime %s", c.WharfImage, c.LBImage, c.RuntimeImage)
	return err
}

// request is the common part of every container of the cluster.
func (c *Cluster) request(role, name, image string, binds []string) testcontainers.GenericContainerRequest {
	labels := map[string]string{LabelCluster: c.Name, LabelRole: role, LabelData: c.DataRoot}
	return testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Name:   "wharfc-" + c.Name + "-" + name,
			Image:  image,
			Labels: labels,
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.NetworkMode = "host"
				hc.Binds = binds
				// Bounded logs on the host's disk.
				hc.LogConfig = container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "2"}}
			},
		},
		Started: true,
		Logger:  tcLogger{c.opts.log},
	}
}

func (c *Cluster) startStore(ctx context.Context, addr string) error {
	dir := filepath.Join(c.DataRoot, "store")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	req := c.request(RoleStore, "store", c.WharfImage, []string{dir + ":" + dir})
	req.Cmd = []string{"store", "--listen", addr, "--data-dir", dir, "--log-format", "json"}
	req.WaitingFor = waitFunc(c.opts.readyTimeout, func(ctx context.Context) error {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err
	})
	ctr, err := testcontainers.GenericContainer(ctx, req)
	c.store = ctr
	if err != nil {
		return fmt.Errorf("store: %w%s", err, logsOf(ctx, ctr))
	}
	return nil
}

func (c *Cluster) createNode(ctx context.Context, n *Node) (testcontainers.Container, error) {
	if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
		return nil, err
	}
	binds := []string{dockerSocket() + ":/var/run/docker.sock", n.dataDir + ":" + n.dataDir}
	// iptables -w serialises on this lock: share the host's with dockerd.
	if _, err := os.Stat(xtablesLock); err == nil {
		binds = append(binds, xtablesLock+":"+xtablesLock)
	}
	req := c.request(RoleNode, strings.TrimPrefix(n.ID, c.Name+"-"), c.WharfImage, binds)
	// The node programs its tenant firewall (iptables) in the host's network
	// namespace, and connects its tenant containers to its bridge itself
	// (netattach): that opens each container's network namespace by its pid
	// on the host (the host's pid namespace, CAP_SYS_PTRACE: the runner is
	// another user) and enters it (CAP_SYS_ADMIN). The node holds the
	// engine's socket: it is the host's root either way.
	hostConfig := req.HostConfigModifier
	req.HostConfigModifier = func(hc *container.HostConfig) {
		hostConfig(hc)
		hc.CapAdd = append(hc.CapAdd, "NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE")
		hc.PidMode = "host"
	}
	req.Labels[LabelNodeID] = n.ID
	req.Cmd = []string{"serve"}
	req.Env = NodeEnv(NodeSpec{ID: n.ID, Listen: strings.TrimPrefix(n.URL, "http://"), DataDir: n.dataDir,
		MongoURI: c.StoreURI, SecretsKey: c.SecretsKey, AdminToken: c.AdminToken, Image: c.RuntimeImage,
		Extra: c.opts.nodeEnv})
	req.WaitingFor = waitFunc(c.opts.readyTimeout, func(ctx context.Context) error { return n.ready(ctx) })
	ctr, err := testcontainers.GenericContainer(ctx, req)
	if err != nil {
		return ctr, fmt.Errorf("node %s: %w%s", n.ID, err, logsOf(ctx, ctr))
	}
	return ctr, nil
}

func (c *Cluster) startLB(ctx context.Context) error {
	var backends []Backend
	for _, n := range c.nodes {
		backends = append(backends, Backend{Name: n.ID, Addr: strings.TrimPrefix(n.URL, "http://")})
	}
	cfg, err := HAProxyConfig(HAProxySpec{Listen: c.opts.listen, StatsListen: c.opts.statsListen,
		Backends: backends, Check: c.opts.check, TenantAffinity: c.opts.affinity})
	if err != nil {
		return err
	}
	path := filepath.Join(c.DataRoot, "haproxy.cfg")
	// HAProxy runs as nobody: the file must be world-readable (it holds no secret).
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	req := c.request(RoleLB, "lb", c.LBImage, []string{path + ":/etc/haproxy/haproxy.cfg:ro"})
	req.WaitingFor = waitFunc(c.opts.readyTimeout, func(ctx context.Context) error {
		_, err := c.Servers(ctx)
		return err
	})
	ctr, err := testcontainers.GenericContainer(ctx, req)
	c.lb = ctr
	if err != nil {
		return fmt.Errorf("haproxy: %w%s", err, logsOf(ctx, ctr))
	}
	return nil
}

// Servers is HAProxy's view of the nodes, by node id.
func (c *Cluster) Servers(ctx context.Context) (map[string]ServerState, error) {
	return ServersAt(ctx, c.StatsURL)
}

// ServersAt reads the nodes' states from an HAProxy stats page.
func ServersAt(ctx context.Context, statsURL string) (map[string]ServerState, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", statsURL+";csv", nil)
	if err != nil {
		return nil, err
	}
	resp, err := statsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("haproxy stats: %s", resp.Status)
	}
	return ParseStats(string(b), "nodes")
}

var statsClient = &http.Client{Timeout: 2 * time.Second}

// WaitServer waits until HAProxy has node id up (or down).
func (c *Cluster) WaitServer(ctx context.Context, id string, up bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		st, err := c.Servers(ctx)
		if err == nil && st[id].Up() == up && st[id].Status != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("haproxy did not mark %s up=%v in %v (last: %+v, %v)", id, up, timeout, st[id], err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitAllUp waits until HAProxy sends traffic to every node.
func (c *Cluster) WaitAllUp(ctx context.Context, timeout time.Duration) error {
	for _, n := range c.nodes {
		if err := c.WaitServer(ctx, n.ID, true, timeout); err != nil {
			return err
		}
	}
	return nil
}

// LBLogs returns HAProxy's log (one line per request).
func (c *Cluster) LBLogs(ctx context.Context) string { return logsOf(ctx, c.lb) }

func (c *Cluster) writeEnvFile() error {
	var b strings.Builder
	fmt.Fprintf(&b, "WHARF_URL=%s\nWHARF_ADMIN_TOKEN=%s\nWHARF_SECRETS_KEY=%s\nWHARF_MONGO_URI=%s\nWHARF_LB_STATS=%s\n",
		c.URL, c.AdminToken, c.SecretsKey, c.StoreURI, c.StatsURL)
	for i, n := range c.nodes {
		fmt.Fprintf(&b, "WHARF_NODE%d_URL=%s\n", i+1, n.URL)
	}
	return os.WriteFile(filepath.Join(c.DataRoot, "cluster.env"), []byte(b.String()), 0o600)
}

// ready is the node's /readyz answering 200.
func (n *Node) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := statsClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/readyz: %d %s", n.URL, resp.StatusCode, b)
	}
	return nil
}

// ContainerID is the node container's id.
func (n *Node) ContainerID() string { return n.ctr.GetContainerID() }

// Stop sends SIGTERM (the node drains: readyz fails, in-flight requests
// finish, its containers go) and waits up to timeout before killing it.
func (n *Node) Stop(ctx context.Context, timeout time.Duration) error {
	return n.ctr.Stop(ctx, &timeout)
}

// Kill sends SIGKILL (a crash: the node's tenant containers stay behind
// until it starts again and reconciles) and waits for the exit.
func (n *Node) Kill(ctx context.Context) error {
	if err := n.c.docker.ContainerKill(ctx, n.ContainerID(), "SIGKILL"); err != nil {
		return err
	}
	waitc, errc := n.c.docker.ContainerWait(ctx, n.ContainerID(), container.WaitConditionNotRunning)
	select {
	case <-waitc:
		return nil
	case err := <-errc:
		return err
	}
}

// Start starts the node again (same id, data and settings) after Stop or
// Kill, and waits until its /readyz answers 200.
func (n *Node) Start(ctx context.Context) error {
	if err := n.ctr.Start(ctx); err != nil {
		return fmt.Errorf("node %s: %w%s", n.ID, err, logsOf(ctx, n.ctr))
	}
	return nil
}

// Logs returns the node's log.
func (n *Node) Logs(ctx context.Context) string { return logsOf(ctx, n.ctr) }

func logsOf(ctx context.Context, ctr testcontainers.Container) string {
	if ctr == nil {
		return ""
	}
	rc, err := ctr.Logs(context.WithoutCancel(ctx))
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	return "\n--- container log (tail) ---\n" + strings.Join(lines, "\n")
}

// waitFunc is a testcontainers wait strategy that polls check until it
// passes. It dials loopback itself: with host networking there is no mapped
// port, and testcontainers' own host detection is not needed.
func waitFunc(timeout time.Duration, check func(context.Context) error) wait.Strategy {
	return wait.ForNop(func(ctx context.Context, _ wait.StrategyTarget) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var last error
		for {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			last = check(cctx)
			ccancel()
			if last == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("not ready after %v: %w", timeout, last)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}).WithStartupTimeout(timeout + 5*time.Second)
}

const xtablesLock = "/run/xtables.lock"

func dockerSocket() string {
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		return strings.TrimPrefix(h, "unix://")
	}
	return "/var/run/docker.sock"
}

func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tcLogger sends testcontainers' messages to the cluster's log.
type tcLogger struct{ w io.Writer }

func (l tcLogger) Printf(format string, v ...any) { fmt.Fprintf(l.w, format+"\n", v...) }
