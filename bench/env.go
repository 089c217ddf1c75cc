package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wharfhq/wharf/config"
	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/images"
	"github.com/wharfhq/wharf/integration/wharftest"
	"github.com/wharfhq/wharf/node"
)

// env is what every figure shares: the engine, the runtime image, the
// default tenant limits, the load generator and the objects to remove.
type env struct {
	opts    Options
	eng     *engine.Docker
	image   images.Image
	cfg     config.Config // wharf serve's defaults: the limits a tenant container gets
	benchID string        // wharf.node label of the baseline containers
	tmp     string
	loadgen string // path of the built load generator
	relay   string // path of the built byte relay (bench/relay)
	nodes   []*wharftest.Node
}

func newEnv(ctx context.Context, opts Options) (*env, error) {
	e := &env{opts: opts, benchID: "bench" + randHex(4)}
	var err error
	if e.cfg, err = config.Load(config.CmdServe, nil, func(string) string { return "" }, io.Discard); err != nil {
		return nil, fmt.Errorf("default configuration: %w", err)
	}
	if e.eng, err = engine.NewDocker(); err != nil {
		return nil, err
	}
	if err := e.eng.Ping(ctx); err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	// The same image a node runs (it builds it on first start otherwise).
	if e.image, err = images.Ensure(ctx, e.eng, images.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return nil, err
	}
	if e.tmp, err = os.MkdirTemp("", "wharfbench-"); err != nil {
		return nil, err
	}
	e.loadgen, e.relay = filepath.Join(e.tmp, "loadgen"), filepath.Join(e.tmp, "relay")
	for bin, pkg := range map[string]string{e.loadgen: "./bench/loadgen", e.relay: "./bench/relay"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = opts.Repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	}
	if _, err := wharftest.Binary(); err != nil {
		return nil, err
	}
	return e, nil
}

// close stops every node and removes everything the run created, even after
// a failure half-way: containers and networks by their node label.
func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, n := range e.nodes {
		e.stopNode(ctx, n)
	}
	if err := node.RemoveObjects(ctx, e.benchID); err != nil {
		e.logf("cleanup of the baseline containers: %v", err)
	}
	if e.eng != nil {
		e.eng.Close()
	}
	if e.tmp != "" {
		_ = os.RemoveAll(e.tmp)
	}
	wharftest.RemoveBinary()
}

func (e *env) logf(format string, args ...any) {
	if e.opts.Progress != nil {
		fmt.Fprintf(e.opts.Progress, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// wnode is a running `wharf serve` process: the built binary, as users run
// it, so its Go runtime is not shared with the harness or the load generator.
type wnode struct {
	*wharftest.Node
	e *env
}

func (e *env) startNode(ctx context.Context, args ...string) (*wnode, error) {
	n, err := wharftest.Run(ctx, wharftest.WithArgs(append([]string{"--log-level", "warn"}, args...)...),
		wharftest.WithEnv(e.opts.NodeEnv...))
	if n != nil {
		e.nodes = append(e.nodes, n)
	}
	if err != nil {
		return nil, err
	}
	return &wnode{n, e}, nil
}

// stopNode drains a node (SIGTERM removes its containers and network) and
// removes whatever a failed drain left.
func (e *env) stopNode(ctx context.Context, n *wharftest.Node) {
	if n == nil || n.DataDir == "" {
		return
	}
	// A drain removes every container of the node: after a burst that is
	// over a hundred, which takes a while on a loaded machine.
	_ = n.Stop(3 * time.Minute)
	// A container create the node sent just before it ended can complete
	// late and hold the network: one more pass after a pause.
	for attempt := 0; ; attempt++ {
		err := node.RemoveObjects(ctx, n.NodeID)
		if err == nil {
			break
		}
		if attempt == 2 {
			e.logf("cleanup of node %s: %v", n.NodeID, err)
			break
		}
		time.Sleep(2 * time.Second)
	}
	_ = os.RemoveAll(n.DataDir)
	n.DataDir = ""
}

func (n *wnode) stop() { n.e.stopNode(context.Background(), n.Node) }

// call sends an API request and checks its status.
func (n *wnode) call(method, path, token string, body any, want int) ([]byte, error) {
	r, err := n.Do(method, path, token, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if r.Status != want {
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r.Body, nil
}

// newTenant creates a tenant and returns its token.
func (n *wnode) newTenant(name string) (string, error) {
	b, err := n.call("POST", "/api/v1/tenants", n.AdminToken, map[string]string{"name": name}, 201)
	if err != nil {
		return "", err
	}
	var out struct{ Token string }
	if err := json.Unmarshal(b, &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("create tenant %s: no token in %s", name, b)
	}
	return out.Token, nil
}

// put stores a function with ?wait= for its modules; it returns how long the
// PUT took and fails unless the function ends ready.
func (n *wnode) put(token, tenant, name, code string, deps map[string]string) (time.Duration, error) {
	body := map[string]any{"code": code}
	if deps != nil {
		body["dependencies"] = deps
	}
	start := time.Now()
	b, err := n.call("PUT", "/api/v1/tenants/"+tenant+"/functions/"+name+"?wait=300s", token, body, 201)
	d := time.Since(start)
	if err != nil {
		return d, err
	}
	var st struct{ Status string }
	if err := json.Unmarshal(b, &st); err != nil || st.Status != "ready" {
		return d, fmt.Errorf("PUT %s/%s: not ready: %s", tenant, name, b)
	}
	return d, nil
}

// tenantWith creates a tenant with one function f.
func (n *wnode) tenantWith(name, code string, deps map[string]string) error {
	tok, err := n.newTenant(name)
	if err != nil {
		return err
	}
	_, err = n.put(tok, name, "f", code, deps)
	return err
}

// poolStats reads the pool's check from /readyz.
func (n *wnode) poolStats() (ready, size int, err error) {
	r, err := n.Do("GET", "/readyz", "", nil)
	if err != nil {
		return 0, 0, err
	}
	var rz struct {
		Checks map[string]struct{ Ready, Size *int }
	}
	if err := json.Unmarshal(r.Body, &rz); err != nil {
		return 0, 0, fmt.Errorf("/readyz: %w", err)
	}
	p := rz.Checks["pool"]
	if p.Ready == nil || p.Size == nil {
		return 0, 0, fmt.Errorf("/readyz has no pool check: %s", r.Body)
	}
	return *p.Ready, *p.Size, nil
}

// poolFull waits until every pooled container is ready, so that a cold start
// measures a claim from a warm pool, not a container creation.
func (n *wnode) poolFull(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ready, size, err := n.poolStats()
		if err == nil && ready >= size {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pool not full after %v (ready %d of %d, %v)", timeout, ready, size, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric reads one unlabelled series from /metrics.
func (n *wnode) metric(name string) (float64, error) {
	r, err := n.Do("GET", "/metrics", "", nil)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(r.Body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}

// httpClient is for the harness's own sequential requests (cold starts);
// a fresh connection per cold start would add a TCP handshake to both sides.
var httpClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}

// timeGet times one GET and checks for a 200.
func timeGet(url string) (time.Duration, []byte, error) {
	start := time.Now()
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return d, nil, err
	}
	if resp.StatusCode != 200 {
		return d, b, fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, b)
	}
	return d, b, nil
}
