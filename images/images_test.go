package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/images/runner"
)

var testRunner = []byte("require('http').createServer((q, s) => s.end('ok')).listen(8080)\n")

// contextFor builds the context once per options value used by several tests
// (it reads ~120 MB of host files).
var (
	ctxOnce  sync.Once
	ctxTar   []byte
	ctxHash  string
	ctxError error
)

func testContext(t *testing.T) ([]byte, string) {
	t.Helper()
	ctxOnce.Do(func() { ctxTar, ctxHash, ctxError = Context(Options{RunnerJS: testRunner}) })
	if ctxError != nil {
		t.Fatalf("Context: %v", ctxError)
	}
	return ctxTar, ctxHash
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, b []byte) (map[string]tarFile, []string) {
	t.Helper()
	files := map[string]tarFile{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", hdr.Name, err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if _, dup := files[name]; dup {
			t.Errorf("duplicate tar entry %s", name)
		}
		files[name] = tarFile{hdr, data}
		order = append(order, name)
	}
	return files, order
}

func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContextContents(t *testing.T) {
	b, hash := testContext(t)
	files, order := readTar(t, b)
	if len(hash) != 64 {
		t.Errorf("hash %q is not a hex sha256", hash)
	}

	mustFile := func(name string, want []byte) tarFile {
		t.Helper()
		f, ok := files[name]
		if !ok {
			t.Errorf("context lacks %s", name)
			return tarFile{hdr: &tar.Header{}}
		}
		if f.hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: type %c, want a regular file", name, f.hdr.Typeflag)
		}
		if want != nil && !bytes.Equal(f.data, want) {
			t.Errorf("%s: content differs from the host file (%d vs %d bytes)", name, len(f.data), len(want))
		}
		return f
	}

	df := mustFile("Dockerfile", nil)
	for _, line := range []string{"FROM scratch", "COPY rootfs/ /", "ENV NODE_ENV=production PATH=/usr/bin",
		"USER 10001:10001", "WORKDIR /tmp", `ENTRYPOINT ["/usr/bin/node", "/wharf/runner.js"]`} {
		if !strings.Contains(string(df.data), line+"\n") {
			t.Errorf("Dockerfile lacks %q:\n%s", line, df.data)
		}
	}

	node, err := resolveNode("")
	if err != nil {
		t.Fatal(err)
	}
	if f := mustFile("rootfs/usr/bin/node", fileBytes(t, node)); f.hdr.Mode != 0o755 {
		t.Errorf("node mode %o, want 755", f.hdr.Mode)
	}

	// The loader and every library ldd lists, with the real files' content.
	out, err := exec.Command("ldd", node).Output()
	if err != nil {
		t.Fatalf("ldd: %v", err)
	}
	libs, err := parseLDD(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) < 2 {
		t.Fatalf("ldd listed only %v", libs)
	}
	sawLoader := false
	for _, l := range libs {
		mustFile("rootfs"+l.Path, fileBytes(t, l.Path))
		sawLoader = sawLoader || l.Soname == ""
	}
	if !sawLoader {
		t.Errorf("ldd output has no loader line: %s", out)
	}
	interp, err := elfInterpreter(node)
	if err != nil {
		t.Fatal(err)
	}
	mustFile("rootfs"+interp, fileBytes(t, interp))

	// npm, reachable through the /usr/bin symlinks, without its docs.
	mustFile("rootfs/usr/lib/node_modules/npm/bin/npm-cli.js", nil)
	mustFile("rootfs/usr/lib/node_modules/npm/package.json", nil)
	if _, ok := files["rootfs/usr/lib/node_modules/npm/docs"]; ok {
		t.Errorf("npm docs are in the context")
	}
	for link, target := range map[string]string{"npm": "npm-cli.js", "npx": "npx-cli.js"} {
		f, ok := files["rootfs/usr/bin/"+link]
		if !ok || f.hdr.Typeflag != tar.TypeSymlink {
			t.Errorf("/usr/bin/%s is not a symlink", link)
			continue
		}
		resolved := filepath.Join("rootfs/usr/bin", f.hdr.Linkname)
		if filepath.Base(resolved) != target {
			t.Errorf("/usr/bin/%s -> %s", link, f.hdr.Linkname)
		}
		mustFile(resolved, nil)
	}

	mustFile("rootfs/etc/ssl/certs/ca-certificates.crt", fileBytes(t, "/etc/ssl/certs/ca-certificates.crt"))
	passwd := mustFile("rootfs/etc/passwd", nil)
	if !strings.Contains(string(passwd.data), "wharf:x:10001:10001:wharf:/tmp:/nonexistent\n") {
		t.Errorf("passwd lacks user wharf 10001:\n%s", passwd.data)
	}
	group := mustFile("rootfs/etc/group", nil)
	if !strings.Contains(string(group.data), "wharf:x:10001:") {
		t.Errorf("group lacks wharf 10001:\n%s", group.data)
	}
	if ns := mustFile("rootfs/etc/nsswitch.conf", nil); !strings.Contains(string(ns.data), "hosts: files dns") {
		t.Errorf("nsswitch.conf: %s", ns.data)
	}
	mustFile("rootfs/wharf/runner.js", testRunner)

	for dir, mode := range map[string]int64{"rootfs/tmp": 0o1777, "rootfs/app": 0o755, "rootfs/modules": 0o755, "rootfs/wharf": 0o755} {
		f, ok := files[dir]
		if !ok || f.hdr.Typeflag != tar.TypeDir || f.hdr.Mode != mode {
			t.Errorf("%s: want a directory with mode %o, got %+v", dir, mode, f.hdr)
		}
	}

	// Determinism: sorted, parents first, no owners or times.
	for i, name := range order {
		if i > 0 && order[i-1] >= name {
			t.Errorf("entries not sorted: %s before %s", order[i-1], name)
		}
		if dir := filepath.Dir(name); dir != "." {
			if _, ok := files[dir]; !ok {
				t.Errorf("%s has no parent directory entry", name)
			}
		}
		h := files[name].hdr
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != 0 {
			t.Errorf("%s: owner %d:%d %q:%q mtime %v", name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
	t.Logf("context: %d entries, %.1f MB, hash %s", len(files), float64(len(b))/1e6, hash)
}

func TestContextDeterministic(t *testing.T) {
	b1, h1 := testContext(t)
	b2, h2, err := Context(Options{RunnerJS: testRunner})
	if err != nil {
		t.Fatal(err)
	}
	if h1 != h2 || !bytes.Equal(b1, b2) {
		t.Fatalf("two builds of the same context differ: %s vs %s", h1, h2)
	}

	_, h3, err := Context(Options{RunnerJS: append([]byte("// v2\n"), testRunner...)})
	if err != nil {
		t.Fatal(err)
	}
	if h3 == h1 {
		t.Errorf("changing the runner did not change the hash")
	}
	if TagFor(h3) == TagFor(h1) {
		t.Errorf("changing the runner did not change the tag")
	}
}

func TestContextOptions(t *testing.T) {
	_, full := testContext(t)

	b, h, err := Context(Options{RunnerJS: testRunner, SkipNPM: true})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := readTar(t, b)
	if _, ok := files["rootfs/usr/bin/npm"]; ok {
		t.Errorf("SkipNPM: npm is in the context")
	}
	if _, ok := files["rootfs/usr/bin/node"]; !ok {
		t.Errorf("SkipNPM: node is missing")
	}
	if h == full {
		t.Errorf("SkipNPM did not change the hash")
	}

	// Another CA bundle and node given explicitly through a symlink.
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("not really a CA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node, err := resolveNode("")
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "node")
	if err := os.Symlink(node, link); err != nil {
		t.Fatal(err)
	}
	b, _, err = Context(Options{RunnerJS: testRunner, SkipNPM: true, NodePath: link, CABundle: ca})
	if err != nil {
		t.Fatal(err)
	}
	files, _ = readTar(t, b)
	if got := files["rootfs/etc/ssl/certs/ca-certificates.crt"]; string(got.data) != "not really a CA\n" || got.hdr.Mode != 0o644 {
		t.Errorf("CA bundle not taken from the option: %q mode %o", got.data, got.hdr.Mode)
	}
	if got := files["rootfs/usr/bin/node"]; got.hdr.Typeflag != tar.TypeReg || got.hdr.Size < 1<<20 {
		t.Errorf("node given through a symlink: %+v", got.hdr)
	}

	// RunnerJS defaults to the embedded runner.
	b, _, err = Context(Options{SkipNPM: true})
	if err != nil {
		t.Fatal(err)
	}
	files, _ = readTar(t, b)
	if got := files["rootfs/wharf/runner.js"]; len(runner.Source) == 0 || !bytes.Equal(got.data, runner.Source) {
		t.Errorf("default runner: /wharf/runner.js has %d bytes, runner.Source %d", len(got.data), len(runner.Source))
	}

	for name, opts := range map[string]Options{
		"missing node":      {RunnerJS: testRunner, NodePath: filepath.Join(dir, "nope")},
		"node not ELF":      {RunnerJS: testRunner, NodePath: ca},
		"missing CA bundle": {RunnerJS: testRunner, SkipNPM: true, CABundle: filepath.Join(dir, "nope.pem")},
		"empty runner":      {RunnerJS: []byte{}},
	} {
		if _, _, err := Context(opts); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestParseLDD(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007fce8ef5a000)\n" +
		"\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007fce8ec00000)\n" +
		"\tlibfoo.so.1 => /opt/foo/lib/libfoo.so.1.2.3 (0x00007fce8ec00000)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007fce8ef5c000)\n"
	libs, err := parseLDD([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []sharedLib{
		{"libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6"},
		{"libfoo.so.1", "/opt/foo/lib/libfoo.so.1.2.3"},
		{"", "/lib64/ld-linux-x86-64.so.2"},
	}
	if len(libs) != len(want) {
		t.Fatalf("got %v, want %v", libs, want)
	}
	for i := range want {
		if libs[i] != want[i] {
			t.Errorf("lib %d: got %v, want %v", i, libs[i], want[i])
		}
	}

	_, err = parseLDD([]byte("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n\tlibgone.so.3 => not found\n"))
	if err == nil || !strings.Contains(err.Error(), "libgone.so.3") {
		t.Errorf("missing library: err = %v", err)
	}
}

// fakeEngine implements the two image calls; any other call panics (nil interface).
type fakeEngine struct {
	engine.Engine
	exists    bool
	existsErr error
	buildErr  error

	checked []string
	builds  []fakeBuild
	prunes  []fakePrune
}

type fakePrune struct {
	labels map[string]string
	before time.Time
}

type fakeBuild struct {
	tag     string
	context []byte
	labels  map[string]string
}

func (f *fakeEngine) ImageExists(_ context.Context, ref string) (bool, error) {
	f.checked = append(f.checked, ref)
	return f.exists, f.existsErr
}

func (f *fakeEngine) PruneImages(_ context.Context, labels map[string]string, before time.Time) (int, error) {
	f.prunes = append(f.prunes, fakePrune{labels, before})
	return 0, nil
}

func (f *fakeEngine) BuildImage(_ context.Context, tag string, r io.Reader, labels map[string]string) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.builds = append(f.builds, fakeBuild{tag, b, labels})
	return f.buildErr
}

// checkPrune: Ensure removed untagged copies of exactly this image (its
// label), and only those older than a build could take from commit to tag.
func checkPrune(t *testing.T, eng *fakeEngine, hash string) {
	t.Helper()
	if len(eng.prunes) != 1 {
		t.Fatalf("%d PruneImages calls, want 1", len(eng.prunes))
	}
	p := eng.prunes[0]
	if len(p.labels) != 1 || p.labels[engine.LabelImage] != hash {
		t.Errorf("pruned labels %v, want {%s: %s}", p.labels, engine.LabelImage, hash)
	}
	if age := time.Since(p.before); age < copyGrace || age > copyGrace+time.Minute {
		t.Errorf("pruned copies created before %v ago, want %v", age, copyGrace)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestEnsure(t *testing.T) {
	ctxBytes, hash := testContext(t)
	wantTag := "wharf-runtime:" + hash[:16]
	opts := Options{RunnerJS: testRunner}

	t.Run("exists", func(t *testing.T) {
		eng := &fakeEngine{exists: true}
		img, err := Ensure(t.Context(), eng, opts, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if img.Tag != wantTag || img.Hash != hash {
			t.Errorf("got %+v, want tag %s hash %s", img, wantTag, hash)
		}
		if len(eng.checked) != 1 || eng.checked[0] != wantTag {
			t.Errorf("ImageExists calls: %v", eng.checked)
		}
		if len(eng.builds) != 0 {
			t.Errorf("built although the image exists")
		}
		checkPrune(t, eng, hash)
	})

	t.Run("missing", func(t *testing.T) {
		eng := &fakeEngine{}
		img, err := Ensure(t.Context(), eng, opts, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if img.Tag != wantTag || img.Hash != hash {
			t.Errorf("got %+v", img)
		}
		if len(eng.builds) != 1 {
			t.Fatalf("%d builds, want 1", len(eng.builds))
		}
		b := eng.builds[0]
		if b.tag != wantTag {
			t.Errorf("built tag %s, want %s", b.tag, wantTag)
		}
		if len(b.labels) != 1 || b.labels[engine.LabelImage] != hash {
			t.Errorf("labels %v, want {%s: %s}", b.labels, engine.LabelImage, hash)
		}
		if !bytes.Equal(b.context, ctxBytes) {
			t.Errorf("build context differs from Context()")
		}
		checkPrune(t, eng, hash)
	})

	t.Run("errors", func(t *testing.T) {
		boom := errors.New("boom")
		for name, eng := range map[string]*fakeEngine{
			"exists fails": {existsErr: boom},
			"build fails":  {buildErr: boom},
		} {
			_, err := Ensure(t.Context(), eng, opts, nil)
			if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "build runtime image: ") {
				t.Errorf("%s: err = %v", name, err)
			}
			if len(eng.prunes) != 0 {
				t.Errorf("%s: pruned images after a failure: %v", name, eng.prunes)
			}
		}
		eng := &fakeEngine{}
		_, err := Ensure(t.Context(), eng, Options{RunnerJS: testRunner, NodePath: "/nonexistent/node"}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "build runtime image: ") || len(eng.checked) != 0 {
			t.Errorf("bad node: err = %v, checked %v", err, eng.checked)
		}
	})
}
