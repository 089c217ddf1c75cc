package sandbox_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/images"
	"github.com/wharfhq/wharf/pool"
	"github.com/wharfhq/wharf/sandbox"
)

// nodeCheck exercises what functions and the runner rely on: threads, child
// processes (a fork of node itself), io_uring where libuv would use it, DNS,
// files, crypto, compression, network interfaces.
const nodeCheck = `
if (process.argv[2] === 'child') { process.send(process.pid); process.disconnect(); return; }
const fs = require('fs'), cp = require('child_process'), os = require('os'), dns = require('dns');
const zlib = require('zlib'), crypto = require('crypto'), {Worker} = require('worker_threads');
(async () => {
  const out = {};
  out.status = fs.readFileSync('/proc/self/status', 'utf8');
  out.ifaces = Object.keys(os.networkInterfaces());
  out.dns = await new Promise((r) => dns.lookup('localhost', (e, a) => r(e ? e.code : a)));
  await fs.promises.writeFile('/tmp/f', 'hello'); out.fs = await fs.promises.readFile('/tmp/f', 'utf8');
  out.zlib = zlib.gunzipSync(zlib.gzipSync('z')).toString();
  out.scrypt = crypto.scryptSync('a', 'b', 8).toString('hex').length;
  out.worker = await new Promise((r) => { const w = new Worker("require('worker_threads').parentPort.postMessage(6*7)", {eval: true}); w.on('message', r); w.on('error', (e) => r(e.message)); });
  out.fork = await new Promise((r) => { const c = cp.fork(__filename, ['child']); c.on('message', (m) => r(typeof m)); c.on('error', (e) => r(e.code)); });
  const io = cp.spawnSync(process.execPath, ['-e', "require('fs').promises.readFile('/proc/self/status').then(() => console.log('io ok'))"], {env: {UV_USE_IO_URING: '1'}, encoding: 'utf8'});
  out.ioUring = io.stdout.trim() + io.stderr.trim();
  console.log(JSON.stringify(out));
})();
`

var (
	probeOnce sync.Once
	probeDir  string
	probeErr  error
)

// modulesDir returns a directory holding a static sysprobe and the node
// check, mounted as the container's /modules the way dependencies are.
func modulesDir(t *testing.T) string {
	t.Helper()
	probeOnce.Do(func() {
		probeDir, probeErr = os.MkdirTemp("", "wharf-sandbox-")
		if probeErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", filepath.Join(probeDir, "sysprobe"), "./sysprobe")
		cmd.Dir = filepath.Dir(file)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			probeErr = err
			probeDir = string(out)
			return
		}
		probeErr = os.WriteFile(filepath.Join(probeDir, "check.js"), []byte(nodeCheck), 0o644)
		if probeErr == nil {
			probeErr = os.Chmod(probeDir, 0o755)
		}
	})
	if probeErr != nil {
		t.Fatalf("build sysprobe: %v %s", probeErr, probeDir)
	}
	return probeDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if probeDir != "" && probeErr == nil {
		os.RemoveAll(probeDir)
	}
	os.Exit(code)
}

// run starts a container with exactly the pooled containers' hardening
// (pool.Spec), with profile as its seccomp profile ("" for the engine's
// default) and entrypoint in place of the runner (nil keeps the runner),
// waits up to wait for it to exit (0: stop it then) and returns its output.
func run(t *testing.T, profile string, entrypoint []string, wait time.Duration, until string) (stdout, stderr string) {
	t.Helper()
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Fatalf("this test needs a Docker engine: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	eng, err := engine.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	img, err := images.Ensure(ctx, eng, images.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	name := "wharf-sbx-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + "-" + time.Now().Format("150405.000000")
	name = strings.ReplaceAll(name, ".", "")
	if err := os.MkdirAll(filepath.Join(root, name, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := pool.Spec(pool.Config{NodeID: "sbx", Image: img.Tag, ImageHash: img.Hash, Network: "none",
		Root: root, ModulesDir: modulesDir(t), Limits: pool.DefaultLimits, SeccompProfile: profile}, name)
	spec.Entrypoint = entrypoint
	id, err := eng.CreateContainer(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.RemoveContainer(context.Background(), id) })
	if err := eng.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		o, e, err := eng.ContainerLogs(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		info, ierr := eng.InspectContainer(ctx, id)
		if ierr != nil {
			t.Fatal(ierr)
		}
		if !info.Running || (until != "" && strings.Contains(string(o)+string(e), until)) || time.Now().After(deadline) {
			if info.Running && until == "" {
				t.Fatalf("container still running after %v; stdout %s stderr %s", wait, o, e)
			}
			// The engine can report a container exited before its last
			// output reaches the log driver: read again, briefly, before
			// taking silence for the answer.
			for quiet := time.Now().Add(2 * time.Second); !info.Running && len(o)+len(e) == 0 && time.Now().Before(quiet); {
				time.Sleep(50 * time.Millisecond)
				if o, e, err = eng.ContainerLogs(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			return string(o), string(e)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func probe(t *testing.T, profile string) map[string]string {
	t.Helper()
	stdout, stderr := run(t, profile, []string{"/modules/sysprobe"}, 30*time.Second, "")
	var res map[string]string
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("sysprobe output %q (stderr %q): %v", stdout, stderr, err)
	}
	return res
}

// Invariant: inside a real container under Wharf's profile, every probed
// syscall the profile denies is refused before reaching its implementation
// (ENOSYS, which the profile returns), narrowed ones are refused outside
// their allowed arguments (EPERM), everyday ones work; and several that
// Docker's default profile lets reach the kernel are among them.
func TestProfileInAContainer(t *testing.T) {
	wharf := probe(t, sandbox.SeccompProfile())
	def := probe(t, "")
	denied := sandbox.Denied()
	probed := 0
	for name, got := range wharf {
		if _, ok := denied[name]; ok {
			probed++
			if got != "ENOSYS" {
				t.Errorf("%s: %s under Wharf's profile, want ENOSYS", name, got)
			}
		}
	}
	if probed < 40 {
		t.Errorf("only %d denied syscalls probed", probed)
	}
	for name, want := range map[string]string{
		"personality(PER_LINUX32)": "EPERM", "socket(AF_CAN)": "EPERM",
		"personality(query)": "ok", "socket(AF_UNIX)": "ok", "socket(AF_INET)": "ok", "socket(AF_NETLINK)": "ok", "getpid": "ok",
	} {
		if got := wharf[name]; got != want {
			t.Errorf("%s: %s under Wharf's profile, want %s", name, got, want)
		}
	}
	// Docker's default lets these reach the kernel (which answers something
	// other than "no such syscall" or "not permitted").
	for _, name := range []string{"ptrace", "adjtimex", "clock_adjtime", "personality(PER_LINUX32)"} {
		if got := def[name]; got == "ENOSYS" || got == "EPERM" {
			t.Errorf("%s: %s under Docker's default profile: the comparison no longer shows a difference", name, got)
		}
	}
	t.Logf("under Docker's default: ptrace %s, adjtimex %s, io_uring_setup %s, personality(PER_LINUX32) %s",
		def["ptrace"], def["adjtimex"], def["io_uring_setup"], def["personality(PER_LINUX32)"])
}

// Invariant: node works under the full sandbox: threads, a fork of node
// itself, io_uring requested (libuv falls back), DNS, files, crypto; and the
// process really is confined (no capabilities, no new privileges, seccomp
// filtering, not root).
func TestNodeWorksInTheSandbox(t *testing.T) {
	stdout, stderr := run(t, sandbox.SeccompProfile(), []string{images.NodePath, "/modules/check.js"}, 30*time.Second, "")
	var out struct {
		Status, DNS, FS, Zlib, Fork, IOUring string
		Ifaces                               []string
		Scrypt, Worker                       int
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("node check output %q (stderr %q): %v", stdout, stderr, err)
	}
	for _, want := range []string{"CapEff:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2", "Uid:\t10001"} {
		if !strings.Contains(out.Status, want) {
			t.Errorf("/proc/self/status lacks %q:\n%s", want, out.Status)
		}
	}
	if out.DNS != "127.0.0.1" || out.FS != "hello" || out.Zlib != "z" || out.Scrypt != 16 || out.Worker != 42 ||
		out.Fork != "number" || out.IOUring != "io ok" || len(out.Ifaces) == 0 {
		t.Errorf("node check: %+v (stderr %q)", out, stderr)
	}
}

// Invariant: the runner starts and warms itself up under the sandbox.
func TestRunnerWarmsUpInTheSandbox(t *testing.T) {
	_, stderr := run(t, sandbox.SeccompProfile(), nil, 30*time.Second, "warmed up in")
	if !strings.Contains(stderr, "warmed up in") || strings.Contains(stderr, "warm-up failed") {
		t.Fatalf("runner log:\n%s", stderr)
	}
}
