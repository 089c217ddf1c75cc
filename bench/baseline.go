package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/wharfhq/wharf/engine"
)

// fnCode is the trivial function every figure runs, through Wharf and in the
// baselines alike.
const fnCode = `module.exports = function (ctx, cb) { cb(null, {host: require('os').hostname()}) }`

// moduleWrapper loads fnCode as a CommonJS module into `fn`, as the runner does.
const moduleWrapper = `const m = {exports: {}}; (function (module, exports) { ` + fnCode + `
})(m, m.exports); const fn = m.exports;
`

// bareServer is the same function as a bare Node HTTP server: what the runtime
// image can do with no Wharf at all (no proxy, no runner, no sandbox).
const bareServer = moduleWrapper + `require('http').createServer((req, res) => {
  const ctx = {query: Object.fromEntries(new URL(req.url, 'http://x').searchParams), headers: req.headers};
  fn(ctx, (err, v) => {
    const b = JSON.stringify(err ? {error: String(err)} : v);
    res.writeHead(err ? 500 : 200, {'content-type': 'application/json', 'content-length': Buffer.byteLength(b)});
    res.end(b);
  });
}).listen(8080, '0.0.0.0');
`

// oneShot runs the function once and prints its answer: a CGI-style process.
const oneShot = moduleWrapper + `fn({query: {}, headers: {}}, (err, v) => { process.stdout.write(JSON.stringify(err ? {error: String(err)} : v)); });
`

// bareSpec is a container of the runtime image running bareServer as the
// runner's user with a read-only root and no capabilities; limited, it has a
// tenant container's memory, CPU, pids and open-files limits.
func (e *env) bareSpec(name string, limited bool) engine.ContainerSpec {
	s := engine.ContainerSpec{
		Name: name, Image: e.image.Tag,
		Entrypoint: []string{"/usr/bin/node"}, Cmd: []string{"-e", bareServer},
		User:         "10001:10001",
		Labels:       map[string]string{engine.LabelNode: e.benchID, engine.LabelRole: "bench-bare"},
		ReadOnlyRoot: true, CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges"},
	}
	if limited {
		s.MemoryBytes, s.NanoCPUs = int64(e.cfg.ContainerMemory), e.cfg.NanoCPUs()
		s.PidsLimit, s.NoFile = e.cfg.ContainerPids, e.cfg.ContainerNoFile
	}
	return s
}

// startBare runs a bare server and returns its container id and the URL of
// its bridge IP once it answers. The caller removes it (removeBare); a run
// cut short leaves it to env.close, which removes every container of benchID.
func (e *env) startBare(ctx context.Context, limited bool) (id, url string, err error) {
	name := fmt.Sprintf("wharfbench-%s-bare-%s", e.benchID, randHex(4))
	if id, err = e.eng.CreateContainer(ctx, e.bareSpec(name, limited)); err != nil {
		return "", "", err
	}
	if err = e.eng.StartContainer(ctx, id); err != nil {
		return id, "", err
	}
	info, err := e.eng.InspectContainer(ctx, id)
	if err != nil {
		return id, "", err
	}
	if info.IP == "" {
		return id, "", fmt.Errorf("bare container %s has no bridge IP", name)
	}
	url = "http://" + info.IP + ":8080/"
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, _, err := timeGet(url)
		if err == nil {
			return id, url, nil
		}
		if time.Now().After(deadline) {
			return id, "", fmt.Errorf("bare container %s never answered: %w", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dockerRunArgs is `docker run --rm` of the runtime image running the
// function once, with a tenant container's limits: the naive way to run a
// webhook without a pool (CGI-style).
func (e *env) dockerRunArgs() []string {
	return []string{"run", "--rm", "--label", engine.LabelNode + "=" + e.benchID, "--label", engine.LabelRole + "=bench-cgi",
		"--user", "10001:10001", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--memory", strconv.FormatInt(int64(e.cfg.ContainerMemory), 10), "--memory-swap", strconv.FormatInt(int64(e.cfg.ContainerMemory), 10),
		"--cpus", strconv.FormatFloat(e.cfg.ContainerCPUs, 'f', -1, 64), "--pids-limit", strconv.FormatInt(e.cfg.ContainerPids, 10),
		"--entrypoint", "/usr/bin/node", e.image.Tag, "-e", oneShot}
}

// dockerRun times one CGI-style request and checks its answer.
func (e *env) dockerRun(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, "docker", e.dockerRunArgs()...).Output()
	d := time.Since(start)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return d, fmt.Errorf("docker run: %w", err)
	}
	var v struct{ Host string }
	if json.Unmarshal(out, &v) != nil || v.Host == "" {
		return d, fmt.Errorf("docker run: unexpected output %q", out)
	}
	return d, nil
}

// removeBare removes a bare server started by startBare.
func (e *env) removeBare(id string) {
	if id == "" {
		return
	}
	if err := e.eng.RemoveContainer(context.Background(), id); err != nil {
		e.logf("remove bare container %s: %v", id, err)
	}
}

// startRelay runs bench/relay in front of to (a byte relay, or with asHTTP a
// plain httputil.ReverseProxy) and returns its address and a function that
// stops it.
func (e *env) startRelay(ctx context.Context, to string, asHTTP bool) (string, func(), error) {
	cmd := exec.Command(e.relay, "-listen", "127.0.0.1:0", "-to", to, "-http="+strconv.FormatBool(asHTTP))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("relay: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("relay did not start: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}
