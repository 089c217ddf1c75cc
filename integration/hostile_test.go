package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/integration/wharftest"
	"github.com/wharfhq/wharf/netpolicy"
	"github.com/wharfhq/wharf/sandbox"
)

// Hostile functions. Each is real tenant code an attacker could deploy.
const (
	// Blocks the event loop forever.
	codeBusyLoop = `module.exports = function (cb) { for (;;) {} }`

	// Every process spawns two more node processes, forever, retrying when
	// the kernel refuses; the function reports the container's pids cgroup
	// once a fork was refused for the pids limit (or after 12 s).
	codeForkBomb = `module.exports = function (cb) {
  const cp = require('child_process'), fs = require('fs');
  const src = "const cp = require('child_process'); const s = process.argv[1];" +
    "const go = () => { try { cp.spawn(process.execPath, ['--v8-pool-size=0', '--max-old-space-size=16', '-e', s, s], {stdio: 'ignore'})" +
    ".on('error', () => setTimeout(go, 20)) } catch (e) { setTimeout(go, 20) } };" +
    "go(); go(); setInterval(() => {}, 1e9)";
  const spawn = () => { try { cp.spawn(process.execPath, ['--v8-pool-size=0', '--max-old-space-size=16', '-e', src, src], {stdio: 'ignore'}).on('error', () => {}) } catch (e) {} };
  spawn(); spawn();
  const read = (f) => { try { return fs.readFileSync('/sys/fs/cgroup/pids/' + f, 'utf8').trim() } catch (e) { return e.code } };
  const report = () => cb(null, {current: read('pids.current'), max: read('pids.max'), events: read('pids.events')});
  const started = Date.now();
  const poll = () => (read('pids.events') !== 'max 0' || Date.now() - started > 12000) ? report() : setTimeout(poll, 200);
  poll();
}`

	// Allocates and touches memory until the kernel kills the container.
	codeMemoryBomb = `module.exports = function (cb) {
  const keep = [];
  const grow = () => { keep.push(Buffer.alloc(16 << 20, 1)); setImmediate(grow) };
  grow();
}`

	// Fills /tmp and /dev/shm; reports how far it got.
	codeDiskFill = `module.exports = function (cb) {
  const fs = require('fs');
  const fill = (file) => {
    const chunk = Buffer.alloc(1 << 20, 7); let written = 0;
    try { const fd = fs.openSync(file, 'w'); try { for (;;) { written += fs.writeSync(fd, chunk) } } finally { fs.closeSync(fd) } }
    catch (e) { return {code: e.code, written} }
    return {code: 'none', written};
  };
  cb(null, {tmp: fill('/tmp/fill'), shm: fill('/dev/shm/fill')});
}`

	// Writes 32 MiB to stdout, which the engine keeps on the host's disk.
	// Writes past the runner's console rate limit straight to stdout, so
	// the engine's log rotation is what must bound the disk.
	codeLogFlood = `module.exports = function (cb) {
  const line = 'z'.repeat(1 << 20) + '\n';
  for (let i = 0; i < 32; i++) process.stdout.write(line);
  cb(null, {written: 32 << 20});
}`

	// Tries to change its own code, the image, the module store.
	codeWrites = `module.exports = function (ctx, cb) {
  const fs = require('fs');
  const me = '/app/functions/' + ctx.query.name + '/' + ctx.query.version + '/function.js';
  const attempts = {
    ownCode: () => fs.writeFileSync(me, 'module.exports = cb => cb(null, "owned")'),
    appDir: () => fs.writeFileSync('/app/evil.js', 'x'),
    nodeModules: () => fs.mkdirSync('/app/functions/' + ctx.query.name + '/node_modules'),
    modules: () => fs.writeFileSync('/modules/evil.js', 'x'),
    root: () => fs.writeFileSync('/evil', 'x'),
    nodeBinary: () => fs.writeFileSync('/usr/bin/node', 'x'),
    runner: () => fs.appendFileSync('/wharf/runner.js', 'x'),
    etc: () => fs.writeFileSync('/etc/passwd', 'x'),
  };
  const out = {};
  for (const k of Object.keys(attempts)) { try { attempts[k](); out[k] = 'written' } catch (e) { out[k] = e.code } }
  cb(null, out);
}`

	// Reads what a process can learn about its own confinement.
	codeProbes = `module.exports = function (cb) {
  const fs = require('fs');
  const read = (f) => { try { return fs.readFileSync(f, 'utf8') } catch (e) { return 'error: ' + e.code } };
  cb(null, {
    status: read('/proc/self/status'), limits: read('/proc/self/limits'), mounts: read('/proc/self/mountinfo'),
    env: process.env, uid: process.getuid(), gid: process.getgid(),
    dockerSock: ['/var/run/docker.sock', '/run/docker.sock'].filter((p) => fs.existsSync(p)),
    pidsMax: read('/sys/fs/cgroup/pids/pids.max').trim(), memLimit: read('/sys/fs/cgroup/memory/memory.limit_in_bytes').trim(),
  });
}`

	// Opens a TCP connection where the query says and reports the outcome.
	// Another tenant's address never resolves (the bridge isolates tenant
	// ports, so no ARP answer comes back): the kernel says EHOSTUNREACH after
	// its three 1 s ARP probes, hence the 5 s before TIMEOUT.
	codeConnect = `module.exports = function (ctx, cb) {
  const s = require('net').connect({host: ctx.query.host, port: Number(ctx.query.port)});
  const done = (r) => { s.destroy(); cb(null, r) };
  s.setTimeout(5000, () => done({code: 'TIMEOUT'}));
  s.on('connect', () => done({ok: true}));
  s.on('error', (e) => done({code: e.code}));
}`

	// Answers with the container's address on its bridge.
	codeAddress = `module.exports = function (cb) {
  const eth = require('os').networkInterfaces().eth0 || [];
  cb(null, {ip: (eth.find((a) => a.family === 'IPv4') || {}).address});
}`

	// Runs a native binary shipped like a dependency (in the module store)
	// that calls the syscalls Wharf's seccomp profile denies.
	codeSysprobe = `module.exports = function (cb) {
  const r = require('child_process').spawnSync('/modules/wharf-test/sysprobe', {encoding: 'utf8'});
  if (r.error) return cb(r.error);
  try { cb(null, JSON.parse(r.stdout)) } catch (e) { cb(new Error('sysprobe: ' + r.stdout + r.stderr)) }
}`
)

// neighbour keeps calling a well-behaved tenant's function and records every
// answer, so a test can tell whether an attack elsewhere slowed or broke it.
type neighbour struct {
	n      *wharftest.Node
	path   string
	want   string
	mu     sync.Mutex
	lat    []time.Duration
	errors []string
	stop   chan struct{}
	done   chan struct{}
}

func (nb *neighbour) call() (time.Duration, error) {
	start := time.Now()
	r, err := nb.n.Do("GET", nb.path, "", nil)
	el := time.Since(start)
	if err != nil {
		return el, err
	}
	if r.Status != 200 || !strings.Contains(string(r.Body), nb.want) {
		return el, fmt.Errorf("status %d body %s", r.Status, r.Body)
	}
	return el, nil
}

// baseline measures the neighbour alone.
func (nb *neighbour) baseline(t *testing.T, n int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for i := 0; i < n; i++ {
		el, err := nb.call()
		if err != nil {
			t.Fatalf("neighbour at idle: %v", err)
		}
		out = append(out, el)
	}
	return out
}

func (nb *neighbour) start() {
	nb.stop, nb.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(nb.done)
		for {
			select {
			case <-nb.stop:
				return
			default:
			}
			el, err := nb.call()
			nb.mu.Lock()
			nb.lat = append(nb.lat, el)
			if err != nil {
				nb.errors = append(nb.errors, err.Error())
			}
			nb.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

func (nb *neighbour) finish() ([]time.Duration, []string) {
	close(nb.stop)
	<-nb.done
	nb.mu.Lock()
	defer nb.mu.Unlock()
	return nb.lat, nb.errors
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// buildSysprobe builds the static probe into the node's module store, where
// a dependency's files would be: read-only at /modules in every container.
func buildSysprobe(t *testing.T, dataDir string) {
	t.Helper()
	dir := filepath.Join(dataDir, "modules", "wharf-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "sysprobe"), "./sandbox/sysprobe")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build sysprobe: %v %s", err, out)
	}
}

// hostOf answers which container served fn (its hostname), or "" on failure.
func hostOf(n *wharftest.Node, tenant, fn string) string {
	r, err := n.Do("GET", "/run/"+tenant+"/"+fn, "", nil)
	if err != nil || r.Status != 200 {
		return ""
	}
	var out struct{ Host string }
	_ = json.Unmarshal(r.Body, &out)
	return out.Host
}

func containerGone(id string) bool { return exec.Command("docker", "inspect", id).Run() != nil }

// Invariant: hostile functions — a busy loop, a fork bomb, a memory bomb, a
// disk fill, a log flood, writes to code, image and module store, confinement probes,
// connections to a neighbour's container and to the host side of the bridge,
// and denied syscalls — run in parallel against one node while a neighbour
// tenant keeps answering correctly and within a small factor of its idle
// latency; every attack fails inside its own container, and each attacker's
// tenant is served again by itself afterwards.
func TestHostileCode(t *testing.T) {
	adminToken := "wha_hostile_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	n := startNode(t, wharftest.WithAdminToken(""), wharftest.WithEnv("WHARF_ADMIN_TOKEN="+adminToken),
		wharftest.WithArgs("--listen", "0.0.0.0:0", "--pool-size", "6", "--pool-parallel", "3", "--health-interval", "1s"))
	n.AdminToken = adminToken
	buildSysprobe(t, n.DataDir)
	_, wharfPort, err := net.SplitHostPort(strings.TrimPrefix(n.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}

	// Every tenant and function is deployed before the clock starts.
	tenants := map[string]string{}
	for _, name := range []string{"neighbour", "busy", "bomb", "mem", "disk", "logs", "writer", "prober", "net-a", "net-b", "syscalls"} {
		tenants[name] = createTenant(t, n, name)
		deploy(t, n, tenants[name], name, "who", whoami, nil)
	}
	deploy(t, n, tenants["busy"], "busy", "spin", codeBusyLoop, map[string]any{"timeout_ms": 1000})
	deploy(t, n, tenants["bomb"], "bomb", "bomb", codeForkBomb, map[string]any{"timeout_ms": 20000})
	deploy(t, n, tenants["mem"], "mem", "eat", codeMemoryBomb, map[string]any{"timeout_ms": 20000})
	deploy(t, n, tenants["disk"], "disk", "fill", codeDiskFill, map[string]any{"timeout_ms": 20000})
	deploy(t, n, tenants["logs"], "logs", "flood", codeLogFlood, map[string]any{"timeout_ms": 20000})
	deploy(t, n, tenants["writer"], "writer", "write", codeWrites, nil)
	deploy(t, n, tenants["prober"], "prober", "probe", codeProbes, nil)
	deploy(t, n, tenants["net-a"], "net-a", "connect", codeConnect, map[string]any{"timeout_ms": 10000})
	deploy(t, n, tenants["net-b"], "net-b", "address", codeAddress, nil)
	deploy(t, n, tenants["syscalls"], "syscalls", "probe", codeSysprobe, nil)

	nb := &neighbour{n: n, path: "/run/neighbour/who?x=42", want: `"x":"42"`}
	nb.call() // cold start outside the measurement
	idle := nb.baseline(t, 200)

	nb.start()
	t.Run("attacks", func(t *testing.T) {
		t.Run("busy loop", func(t *testing.T) {
			t.Parallel()
			before := hostOf(n, "busy", "who")
			start := time.Now()
			r := do(t, n, "GET", "/run/busy/spin", "", nil)
			expect(t, r, http.StatusGatewayTimeout)
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("504 after %v for a 1 s timeout", el)
			}
			eventually(t, 20*time.Second, "a fresh container for the busy tenant", func() bool {
				h := hostOf(n, "busy", "who")
				return h != "" && h != before
			})
			eventually(t, 20*time.Second, "the spinning container's removal", func() bool { return containerGone(before) })
		})

		t.Run("fork bomb", func(t *testing.T) {
			t.Parallel()
			before := hostOf(n, "bomb", "who")
			r := do(t, n, "GET", "/run/bomb/bomb", "", nil)
			var out struct{ Current, Max, Events string }
			if r.Status == 200 {
				if err := r.JSON(&out); err != nil {
					t.Fatal(err)
				}
				cur, _ := strconv.Atoi(out.Current)
				if out.Max != "64" || cur > 64 || !strings.HasPrefix(out.Events, "max ") || out.Events == "max 0" {
					t.Errorf("pids cgroup during the bomb: %+v; want the limit of 64 hit", out)
				}
			} else if r.Status != http.StatusBadGateway && r.Status != http.StatusGatewayTimeout {
				t.Errorf("fork bomb request: %d %s", r.Status, r.Body)
			}
			t.Logf("fork bomb: %d %+v", r.Status, out)
			eventually(t, 30*time.Second, "a fresh container for the bomb's tenant", func() bool {
				h := hostOf(n, "bomb", "who")
				return h != "" && h != before
			})
			eventually(t, 20*time.Second, "the bombed container's removal", func() bool { return containerGone(before) })
		})

		t.Run("memory bomb", func(t *testing.T) {
			t.Parallel()
			before := hostOf(n, "mem", "who")
			r := do(t, n, "GET", "/run/mem/eat", "", nil)
			expect(t, r, http.StatusBadGateway)
			eventually(t, 20*time.Second, "a fresh container for the memory bomb's tenant", func() bool {
				h := hostOf(n, "mem", "who")
				return h != "" && h != before
			})
			eventually(t, 20*time.Second, "the killed container's removal", func() bool { return containerGone(before) })
		})

		t.Run("disk fill", func(t *testing.T) {
			t.Parallel()
			before := hostOf(n, "disk", "who")
			r := do(t, n, "GET", "/run/disk/fill", "", nil)
			expect(t, r, 200)
			var out struct {
				Tmp, Shm struct {
					Code    string
					Written int
				}
			}
			if err := r.JSON(&out); err != nil {
				t.Fatal(err)
			}
			if out.Tmp.Code != "ENOSPC" || out.Tmp.Written > 16<<20 || out.Shm.Code != "ENOSPC" || out.Shm.Written > 1<<20 {
				t.Errorf("fills: %+v; want ENOSPC within 16 MiB of /tmp and 1 MiB of /dev/shm", out)
			}
			if h := hostOf(n, "disk", "who"); h != before {
				t.Errorf("after filling its disk the tenant is served by %q, want its container %s still serving", h, before)
			}
		})

		t.Run("log flood", func(t *testing.T) {
			t.Parallel()
			id := hostOf(n, "logs", "who")
			expect(t, do(t, n, "GET", "/run/logs/flood", "", nil), 200)
			out, err := exec.Command("docker", "inspect", "-f", "{{.LogPath}}", id).Output()
			if err != nil {
				t.Fatal(err)
			}
			path := strings.TrimSpace(string(out))
			var total int64
			eventually(t, 10*time.Second, "the engine to have written the log", func() bool {
				total = 0
				for _, p := range []string{path, path + ".1", path + ".2"} {
					if st, err := os.Stat(p); err == nil {
						total += st.Size()
					}
				}
				_, rotated := os.Stat(path + ".1")
				return rotated == nil
			})
			if total > 3<<20 {
				t.Errorf("32 MiB of output left %d bytes on the host's disk, want at most about 2 MiB", total)
			}
			if h := hostOf(n, "logs", "who"); h != id {
				t.Errorf("the flooding tenant's container changed: %s -> %s", id, h)
			}
		})

		t.Run("writes to code, image and modules", func(t *testing.T) {
			t.Parallel()
			r := do(t, n, "GET", "/run/writer/write?name=write&version=1", "", nil)
			expect(t, r, 200)
			var out map[string]string
			if err := r.JSON(&out); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"ownCode", "appDir", "nodeModules", "modules", "root"} {
				if out[k] != "EROFS" {
					t.Errorf("write to %s: %s, want EROFS", k, out[k])
				}
			}
			// The image's files belong to root as well, so the kernel may refuse
			// them for permissions before it looks at the read-only mount.
			for _, k := range []string{"nodeBinary", "runner", "etc"} {
				if out[k] != "EROFS" && out[k] != "EACCES" {
					t.Errorf("write to %s: %s, want EROFS or EACCES", k, out[k])
				}
			}
			// Its code is unchanged: the function still does what was deployed.
			r = do(t, n, "GET", "/run/writer/write?name=write&version=1", "", nil)
			if r.Status != 200 || strings.Contains(string(r.Body), "owned") {
				t.Errorf("after the attempts: %d %s", r.Status, r.Body)
			}
		})

		t.Run("confinement probes", func(t *testing.T) {
			t.Parallel()
			r := do(t, n, "GET", "/run/prober/probe", "", nil)
			expect(t, r, 200)
			var out struct {
				Status, Limits, Mounts, PidsMax, MemLimit string
				Env                                       map[string]string
				UID, GID                                  int
				DockerSock                                []string
			}
			if err := r.JSON(&out); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000",
				"NoNewPrivs:\t1", "Seccomp:\t2"} {
				if !strings.Contains(out.Status, want) {
					t.Errorf("/proc/self/status lacks %q", want)
				}
			}
			if out.UID == 0 || out.GID == 0 || strings.Contains(out.Status, "Uid:\t0") {
				t.Errorf("running as uid %d gid %d", out.UID, out.GID)
			}
			if !regexpMatch(`Max open files\s+1024\s+1024`, out.Limits) {
				t.Errorf("open files limit:\n%s", out.Limits)
			}
			if out.PidsMax != "64" || out.MemLimit != strconv.Itoa(128<<20) {
				t.Errorf("cgroup limits: pids %s memory %s", out.PidsMax, out.MemLimit)
			}
			if len(out.DockerSock) != 0 || strings.Contains(out.Mounts, "docker.sock") {
				t.Errorf("the Docker socket is reachable: %v", out.DockerSock)
			}
			checkMounts(t, out.Mounts)
			for k, v := range out.Env {
				switch k {
				case "PATH", "HOSTNAME", "HOME", "NODE_ENV", "WHARF_PORT", "WHARF_APP_DIR", "WHARF_LOG_RATE":
				default:
					t.Errorf("unexpected variable %s in the function's environment", k)
				}
				if strings.Contains(v, adminToken) || strings.Contains(v, "mongodb://") {
					t.Errorf("%s carries Wharf's configuration: %q", k, v)
				}
			}
		})

		t.Run("network", func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			eng, err := engine.NewDocker()
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			ninfo, err := eng.InspectNetwork(ctx, "wharf-"+n.NodeID)
			if err != nil {
				t.Fatal(err)
			}
			gw := ninfo.Gateway
			port, accepted := countingListener(t, net.JoinHostPort(gw, "0"))
			r := do(t, n, "GET", "/run/net-b/address", "", nil)
			expect(t, r, 200)
			var b struct{ IP string }
			if err := r.JSON(&b); err != nil || b.IP == "" {
				t.Fatalf("net-b address: %v %s", err, r.Body)
			}
			myPort := strconv.Itoa(port)
			// The host itself reaches Wharf's port on the gateway address: only the rules stop the tenant.
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(gw, wharfPort), time.Second); err != nil {
				t.Fatalf("control: Wharf does not listen on %s:%s: %v", gw, wharfPort, err)
			} else {
				c.Close()
			}
			for _, target := range []struct{ what, host, port string }{
				{"another tenant's runner", b.IP, "8080"},
				{"Wharf's own port on the host", gw, wharfPort},
				{"a port the test opened on the host", gw, myPort},
				{"the Docker API port on the host", gw, "2375"},
			} {
				q := url.Values{"host": {target.host}, "port": {target.port}}
				r := do(t, n, "GET", "/run/net-a/connect?"+q.Encode(), "", nil)
				expect(t, r, 200)
				var out struct {
					OK   bool
					Code string
				}
				_ = r.JSON(&out)
				if out.OK || out.Code != "EHOSTUNREACH" {
					t.Errorf("%s (%s:%s): %s, want EHOSTUNREACH", target.what, target.host, target.port, r.Body)
				}
			}
			if accepted.Load() != 0 {
				t.Errorf("the host listener accepted %d connections from a tenant", accepted.Load())
			}
			// Metadata is never contacted: the rule refusing it must be installed.
			names := netpolicy.NamesFor(n.NodeID)
			out, err := exec.Command("iptables", "-w", "-S", names.Forward).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "-d 169.254.0.0/16 -j REJECT") {
				t.Errorf("no rule refusing link-local addresses: %v\n%s", err, out)
			}
			for _, hook := range [][]string{{"DOCKER-USER", "-i", names.Bridge, "-j", names.Forward}, {"INPUT", "-i", names.Bridge, "-j", names.Input}} {
				if out, err := exec.Command("iptables", append([]string{"-w", "-C"}, hook...)...).CombinedOutput(); err != nil {
					t.Errorf("hook %v missing: %v %s", hook, err, out)
				}
			}
		})

		t.Run("denied syscalls", func(t *testing.T) {
			t.Parallel()
			r := do(t, n, "GET", "/run/syscalls/probe", "", nil)
			expect(t, r, 200)
			var out map[string]string
			if err := r.JSON(&out); err != nil {
				t.Fatal(err)
			}
			if out["getpid"] != "ok" {
				t.Fatalf("the probe itself does not work: %v", out)
			}
			probed := 0
			for name, got := range out {
				if _, denied := sandbox.Denied()[name]; denied {
					probed++
					if got != "ENOSYS" {
						t.Errorf("%s from a function: %s, want ENOSYS", name, got)
					}
				}
			}
			if probed < 40 || out["personality(PER_LINUX32)"] != "EPERM" || out["socket(AF_CAN)"] != "EPERM" {
				t.Errorf("%d denied syscalls probed; narrowed: personality %s, AF_CAN %s", probed, out["personality(PER_LINUX32)"], out["socket(AF_CAN)"])
			}
		})
	})
	during, failures := nb.finish()

	if len(failures) > 0 {
		t.Errorf("the neighbour failed %d of %d requests during the attacks, e.g. %s", len(failures), len(during), failures[0])
	}
	ip50, ip99 := quantile(idle, 0.5), quantile(idle, 0.99)
	dp50, dp99, dmax := quantile(during, 0.5), quantile(during, 0.99), quantile(during, 1)
	t.Logf("neighbour latency: idle p50 %v p99 %v (%d requests); under attack p50 %v p99 %v max %v (%d requests)",
		ip50, ip99, len(idle), dp50, dp99, dmax, len(during))
	// A small factor of idle; the absolute floor absorbs this shared 2-core
	// machine's scheduling noise at sub-millisecond idle latencies.
	if dp50 > max(5*ip50, ip50+20*time.Millisecond) {
		t.Errorf("neighbour p50 under attack %v vs idle %v", dp50, ip50)
	}
	if dp99 > max(10*ip99, ip99+200*time.Millisecond) {
		t.Errorf("neighbour p99 under attack %v vs idle %v", dp99, ip99)
	}
	if len(during) < 100 {
		t.Errorf("only %d neighbour requests during the attacks", len(during))
	}
}

// checkMounts fails on any host path in the container beyond /app and
// /modules (read-only) and the engine's own read-only /etc files.
func checkMounts(t *testing.T, mountinfo string) {
	t.Helper()
	allowed := map[string]bool{"/app": true, "/modules": true, "/etc/hosts": true, "/etc/hostname": true,
		"/etc/resolv.conf": true, "/sbin/docker-init": true}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		root, target, opts := f[3], f[4], f[5]
		sep := slices.Index(f, "-")
		if sep < 0 || sep+1 >= len(f) {
			continue
		}
		fstype := f[sep+1]
		// Kernel and memory file systems, and the image's own overlay, hold
		// nothing of the host's disks; anything else is a host path.
		switch fstype {
		case "proc", "sysfs", "cgroup", "cgroup2", "tmpfs", "devpts", "mqueue", "overlay":
			continue
		}
		if !allowed[target] {
			t.Errorf("host path %s mounted at %s", root, target)
			continue
		}
		seen[target] = true
		if !strings.HasPrefix(opts, "ro") {
			t.Errorf("%s is mounted %s", target, opts)
		}
	}
	if !seen["/app"] || !seen["/modules"] {
		t.Errorf("/app or /modules missing from the mounts:\n%s", mountinfo)
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
