package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/wharfhq/wharf/engine"
)

// countingEngine counts BuildImage calls on a real engine.
type countingEngine struct {
	engine.Engine
	builds int
}

func (c *countingEngine) BuildImage(ctx context.Context, tag string, r io.Reader, labels map[string]string) error {
	c.builds++
	return c.Engine.BuildImage(ctx, tag, r, labels)
}

// realDocker connects to the local engine, closed at the test's end; without
// one answering the test is skipped.
func realDocker(t *testing.T) *engine.Docker {
	t.Helper()
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("skipping the real-Docker test: `docker info` failed (%v): %s", err, firstLine(out))
	}
	d, err := engine.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestDockerRuntimeImage builds the runtime image in the local Docker engine
// and runs node and npm in hardened containers of it.
func TestDockerRuntimeImage(t *testing.T) {
	d := realDocker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cli := d.Client()
	eng := &countingEngine{Engine: d}

	// A runner unique to this run gives the image a tag of its own, so the
	// build really happens and the image can be removed afterwards; the
	// production image (the default runner's tag) is left alone.
	runnerJS := append(append([]byte{}, defaultRunner()...),
		fmt.Sprintf("\n// wharf images test %d\n", time.Now().UnixNano())...)
	opts := Options{RunnerJS: runnerJS}

	start := time.Now()
	img, err := Ensure(ctx, eng, opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Cleanup(func() {
		if _, err := cli.ImageRemove(context.Background(), img.Tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !client.IsErrNotFound(err) {
			t.Errorf("remove test image %s: %v", img.Tag, err)
		}
	})
	if eng.builds != 1 {
		t.Fatalf("Ensure of a new image made %d builds, want 1", eng.builds)
	}

	ins, err := cli.ImageInspect(ctx, img.Tag)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Ensure built %s in %v; image size %.1f MB", img.Tag, elapsed.Round(time.Millisecond), float64(ins.Size)/1e6)
	if got := ins.Config.Labels[engine.LabelImage]; got != img.Hash {
		t.Errorf("label %s = %q, want %q", engine.LabelImage, got, img.Hash)
	}
	if ins.Config.User != "10001:10001" || ins.Config.WorkingDir != "/tmp" ||
		!slices.Equal(ins.Config.Entrypoint, []string{"/usr/bin/node", "/wharf/runner.js"}) ||
		!slices.Contains(ins.Config.Env, "NODE_ENV=production") {
		t.Errorf("image config: user %q workdir %q entrypoint %q env %q",
			ins.Config.User, ins.Config.WorkingDir, ins.Config.Entrypoint, ins.Config.Env)
	}

	// A second Ensure finds the image and does not build.
	if again, err := Ensure(ctx, eng, opts, testLogger(t)); err != nil || again != img || eng.builds != 1 {
		t.Errorf("second Ensure: %+v, %v, %d builds", again, err, eng.builds)
	}

	hostNode := strings.TrimSpace(hostOutput(t, "node", "--version"))
	out := runHardened(ctx, t, cli, img.Tag, "/usr/bin/node", "-e", "console.log(process.version, process.getuid())")
	if want := hostNode + " 10001\n"; out != want {
		t.Errorf("node in the image printed %q, want %q", out, want)
	}

	// npm-cli.js has a #!/usr/bin/env shebang and there is no env: run it through node.
	hostNPM := strings.TrimSpace(hostOutput(t, "npm", "--version"))
	if out := runHardened(ctx, t, cli, img.Tag, "/usr/bin/node", "/usr/bin/npm", "--version"); strings.TrimSpace(out) != hostNPM {
		t.Errorf("npm --version in the image printed %q, want %q", out, hostNPM)
	}

	// What the runner relies on: the user database, HOME, name lookup
	// through nsswitch (Docker's /etc/hosts), a read-only root and a writable /tmp.
	probe := `
const fs = require('fs'), os = require('os'), dns = require('dns');
const u = os.userInfo();
let ro = 'writable';
try { fs.writeFileSync('/wharf/x', 'x') } catch (e) { ro = e.code }
fs.writeFileSync('/tmp/x', 'x');
dns.lookup('localhost', { family: 4 }, (err, addr) => {
  console.log(u.username, u.homedir, process.env.HOME, process.cwd(), ro, err ? err.code : addr,
    fs.readFileSync('/wharf/runner.js', 'utf8').includes('wharf images test'));
});`
	if out, want := runHardened(ctx, t, cli, img.Tag, "/usr/bin/node", "-e", probe), "wharf /tmp /tmp /tmp EROFS 127.0.0.1 true\n"; out != want {
		t.Errorf("probe printed %q, want %q", out, want)
	}

	// The image's own entrypoint: the runner serves its readiness probe on RunnerPort.
	id, err := d.CreateContainer(ctx, engine.ContainerSpec{
		Image:        img.Tag,
		User:         fmt.Sprintf("%d:%d", UID, UID),
		Labels:       map[string]string{engine.LabelRole: "test"},
		Tmpfs:        map[string]string{"/tmp": "size=64m,mode=1777"},
		ReadOnlyRoot: true,
		CapDrop:      []string{"ALL"},
		SecurityOpt:  []string{"no-new-privileges"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.RemoveContainer(context.Background(), id); err != nil {
			t.Errorf("remove runner container: %v", err)
		}
	})
	start = time.Now()
	if err := d.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	info, err := d.InspectContainer(ctx, id)
	if err != nil || info.IP == "" {
		t.Fatalf("runner container has no IP: %+v, %v", info, err)
	}
	url := fmt.Sprintf("http://%s/_wharf/ready", net.JoinHostPort(info.IP, strconv.Itoa(RunnerPort)))
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			// 503 while the runner warms itself up; 200 once it serves.
			if resp.StatusCode == http.StatusOK {
				t.Logf("runner ready %v after start", time.Since(start).Round(time.Millisecond))
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("GET %s: %s", url, resp.Status)
			}
		}
		if time.Since(start) > 15*time.Second {
			stdout, stderr, _ := d.ContainerLogs(ctx, id)
			t.Fatalf("runner never answered %s: %v\nstdout: %s\nstderr: %s", url, err, stdout, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runHardened runs cmd in a container of ref locked down the way Wharf runs
// functions and returns its stdout; a non-zero exit fails the test.
func runHardened(ctx context.Context, t *testing.T, cli *client.Client, ref string, cmd ...string) string {
	t.Helper()
	resp, err := cli.ContainerCreate(ctx,
		&container.Config{
			Image:      ref,
			Entrypoint: cmd[:1],
			Cmd:        cmd[1:],
			User:       fmt.Sprintf("%d:%d", UID, UID),
			Labels:     map[string]string{engine.LabelRole: "test"},
		},
		&container.HostConfig{
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges"},
			Tmpfs:          map[string]string{"/tmp": "size=64m,mode=1777"},
			NetworkMode:    "none",
		}, nil, nil, "")
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	t.Cleanup(func() {
		if err := cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
			t.Errorf("remove container %s: %v", resp.ID[:12], err)
		}
	})
	start := time.Now()
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	var code int64
	okc, errc := cli.ContainerWait(ctx, resp.ID, container.WaitConditionNotRunning)
	select {
	case r := <-okc:
		code = r.StatusCode
	case err := <-errc:
		t.Fatalf("wait for container: %v", err)
	}
	rc, err := cli.ContainerLogs(ctx, resp.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("container logs: %v", err)
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, rc); err != nil {
		t.Fatalf("container logs: %v", err)
	}
	t.Logf("%q: exit %d in %v", cmd[1:], code, time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("%q exited %d\nstdout: %s\nstderr: %s", cmd, code, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func hostOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v on the host: %v", name, args, err)
	}
	return string(out)
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// Invariant: PruneImages removes the untagged copies of an image a
// concurrent build leaves behind (its labels, older than the cut-off) and
// nothing else: not the tagged image, not a copy younger than the cut-off, not
// one a container uses.
func TestDockerPruneImages(t *testing.T) {
	d := realDocker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cli := d.Client()
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	labels := map[string]string{engine.LabelImage: "prunetest-" + id}
	tag := "wharf-prunetest:" + id
	byLabel := filters.NewArgs(filters.Arg("label", engine.LabelImage+"="+labels[engine.LabelImage]))
	t.Cleanup(func() {
		imgs, _ := cli.ImageList(context.Background(), image.ListOptions{All: true, Filters: byLabel})
		for _, img := range imgs {
			_, _ = cli.ImageRemove(context.Background(), img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	})
	build := func(content string) string {
		t.Helper()
		if err := d.BuildImage(ctx, tag, bytes.NewReader(tarOf(t, map[string]string{
			"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": content})), labels); err != nil {
			t.Fatal(err)
		}
		ins, err := cli.ImageInspect(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		return ins.ID
	}
	exists := func(ref string) bool {
		_, err := cli.ImageInspect(ctx, ref)
		return err == nil
	}
	first := build("one")
	second := build("two") // takes the tag: first is now an untagged copy
	if first == second {
		t.Fatal("both builds gave one image")
	}
	if n, err := d.PruneImages(ctx, labels, time.Now().Add(-time.Hour)); err != nil || n != 0 || !exists(first) {
		t.Fatalf("copy younger than the cut-off: removed %d (%v), still there: %v", n, err, exists(first))
	}
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: first, Cmd: []string{"/f"},
		Labels: map[string]string{engine.LabelNode: "prunetest-" + id}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := d.PruneImages(ctx, labels, time.Now().Add(time.Minute)); err != nil || n != 0 || !exists(first) {
		t.Fatalf("copy a container uses: removed %d (%v), still there: %v", n, err, exists(first))
	}
	if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if n, err := d.PruneImages(ctx, labels, time.Now().Add(time.Minute)); err != nil || n != 1 || exists(first) {
		t.Fatalf("unused copy: removed %d (%v), still there: %v", n, err, exists(first))
	}
	if !exists(second) || !exists(tag) {
		t.Fatal("the tagged image was removed")
	}
	if _, err := d.PruneImages(ctx, nil, time.Now()); err == nil {
		t.Fatal("PruneImages without labels would touch other images; want an error")
	}
}

// tarOf is a build context holding the files, written as the runtime
// image's own context is (tree).
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	tr := newTree()
	for name, body := range files {
		if err := tr.addData(name, []byte(body), modeFile); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := tr.write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
