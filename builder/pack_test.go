package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func write(t *testing.T, root, rel, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// tree is a small npm output: a plugin with a peer, a scoped package, a
// nested dependency with its own peer, a .bin link and an inside symlink.
func tree(t *testing.T) string {
	root := t.TempDir()
	write(t, root, "node_modules/plugin/package.json", `{"name":"plugin","peerDependencies":{"host":"^1","Bad Name":"1"}}`, 0o644)
	write(t, root, "node_modules/plugin/index.js", `module.exports = 1`, 0o600)
	write(t, root, "node_modules/plugin/bin/cli.js", `#!/usr/bin/env node`, 0o700)
	write(t, root, "node_modules/host/package.json", `{"name":"host"}`, 0o644)
	write(t, root, "node_modules/@s/x/package.json", `{"name":"@s/x","peerDependencies":{"@s/y":"1"}}`, 0o644)
	write(t, root, "node_modules/plugin/node_modules/dep/package.json", `{"name":"dep","peerDependencies":{"react":"*"}}`, 0o644)
	write(t, root, "node_modules/plugin/lib/package.json", `{"peerDependencies":{"not-a-package-root":"1"}}`, 0o644)
	if err := os.MkdirAll(filepath.Join(root, "node_modules/.bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../plugin/bin/cli.js", filepath.Join(root, "node_modules/.bin/cli")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../index.js", filepath.Join(root, "node_modules/plugin/lib/alias.js")); err != nil {
		t.Fatal(err)
	}
	return root
}

type entry struct {
	typ  byte
	mode int64
	link string
	body string
}

func unpackAll(t *testing.T, b []byte) map[string]entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]entry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d gid %d mtime %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		out[h.Name] = entry{typ: h.Typeflag, mode: h.Mode, link: h.Linkname, body: string(body)}
	}
}

func TestPack(t *testing.T) {
	root := tree(t)
	var buf bytes.Buffer
	st, err := Pack(root, &buf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got := unpackAll(t, buf.Bytes())
	if e := got["node_modules/plugin/index.js"]; e.typ != tar.TypeReg || e.mode != 0o644 || e.body != "module.exports = 1" {
		t.Fatalf("index.js: %+v", e)
	}
	if e := got["node_modules/plugin/bin/cli.js"]; e.mode != 0o755 {
		t.Fatalf("executable kept its x bit normalised to 0755: %+v", e)
	}
	if e := got["node_modules/plugin/"]; e.typ != tar.TypeDir || e.mode != 0o755 {
		t.Fatalf("dir: %+v", e)
	}
	if e := got["node_modules/plugin/lib/alias.js"]; e.typ != tar.TypeSymlink || e.link != "../index.js" {
		t.Fatalf("symlink: %+v", e)
	}
	for name := range got {
		if strings.Contains(name, ".bin") {
			t.Fatalf(".bin packed: %s", name)
		}
	}
	if st.Files != 7 || st.Packages != 4 {
		t.Fatalf("stats %+v, want 7 files, 4 packages", st)
	}
	if want := []string{"@s/y", "host", "react"}; !slices.Equal(st.Peers, want) {
		t.Fatalf("peers %v, want %v", st.Peers, want)
	}
	// Deterministic: the same tree packs to the same bytes.
	var again bytes.Buffer
	if _, err := Pack(root, &again, 1<<20); err != nil || !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatalf("second pack differs (%v)", err)
	}
}

func TestPackRefuses(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		root := tree(t)
		if _, err := Pack(root, io.Discard, 20); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Pack = %v, want ErrTooLarge", err)
		}
	})
	t.Run("symlink leaving the tree", func(t *testing.T) {
		root := tree(t)
		if err := os.Symlink("../../../etc/passwd", filepath.Join(root, "node_modules/plugin/evil")); err != nil {
			t.Fatal(err)
		}
		if _, err := Pack(root, io.Discard, 1<<20); err == nil || !strings.Contains(err.Error(), "leaves") {
			t.Fatalf("Pack = %v", err)
		}
	})
	t.Run("absolute symlink", func(t *testing.T) {
		root := tree(t)
		if err := os.Symlink("/etc/passwd", filepath.Join(root, "node_modules/plugin/evil")); err != nil {
			t.Fatal(err)
		}
		if _, err := Pack(root, io.Discard, 1<<20); err == nil {
			t.Fatal("Pack accepted an absolute symlink")
		}
	})
	t.Run("fifo", func(t *testing.T) {
		root := tree(t)
		if err := syscall.Mkfifo(filepath.Join(root, "node_modules/plugin/pipe"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Pack(root, io.Discard, 1<<20); err == nil {
			t.Fatal("Pack accepted a FIFO")
		}
	})
	t.Run("no node_modules", func(t *testing.T) {
		if _, err := Pack(t.TempDir(), io.Discard, 1<<20); err == nil {
			t.Fatal("Pack of an empty output succeeded")
		}
	})
}

func TestSymlinkInside(t *testing.T) {
	for _, tc := range []struct {
		name, target string
		ok           bool
	}{
		{"node_modules/a/x", "y", true},
		{"node_modules/a/x", "../b/y", true},
		{"node_modules/a/x", "../../node_modules/b", true},
		{"node_modules/a/x", "../..", false},
		{"node_modules/a/x", "../../../etc", false},
		{"node_modules/a/x", "/etc/passwd", false},
		{"node_modules/a/x", "", false},
		{"node_modules/a/x", `..\..\x`, false},
	} {
		if got := SymlinkInside(tc.name, tc.target); got != tc.ok {
			t.Errorf("SymlinkInside(%q, %q) = %v, want %v", tc.name, tc.target, got, tc.ok)
		}
	}
}
