package closure

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
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
// nested dependency with its own peer, and a .bin link.
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
	return root
}

type entry struct {
	typ  byte
	mode int64
	body string
}

func readTar(t *testing.T, b []byte) map[string]entry {
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
		out[h.Name] = entry{typ: h.Typeflag, mode: h.Mode, body: string(body)}
	}
}

func TestPack(t *testing.T) {
	root := tree(t)
	var buf bytes.Buffer
	st, err := Pack(root, &buf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got := readTar(t, buf.Bytes())
	if e := got["node_modules/plugin/index.js"]; e.typ != tar.TypeReg || e.mode != 0o644 || e.body != "module.exports = 1" {
		t.Fatalf("index.js: %+v", e)
	}
	if e := got["node_modules/plugin/bin/cli.js"]; e.mode != 0o755 {
		t.Fatalf("executable not normalised to 0755: %+v", e)
	}
	if e := got["node_modules/plugin/"]; e.typ != tar.TypeDir || e.mode != 0o755 {
		t.Fatalf("dir: %+v", e)
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
	for _, tc := range []struct {
		name  string
		limit int64
		setup func(t *testing.T, root string)
		is    error
	}{
		{"too large", 20, func(*testing.T, string) {}, ErrTooLarge},
		{"symlink", 1 << 20, func(t *testing.T, root string) {
			if err := os.Symlink("../../../etc/passwd", filepath.Join(root, "node_modules/plugin/evil")); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"fifo", 1 << 20, func(t *testing.T, root string) {
			if err := syscall.Mkfifo(filepath.Join(root, "node_modules/plugin/pipe"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t)
			tc.setup(t, root)
			_, err := Pack(root, io.Discard, tc.limit)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Pack = %v", err)
			}
		})
	}
	if _, err := Pack(t.TempDir(), io.Discard, 1<<20); err == nil {
		t.Fatal("Pack of an output without node_modules succeeded")
	}
}

// Invariant: what Pack writes, Unpack restores, with the modes a container needs.
func TestUnpackRoundTrip(t *testing.T) {
	root := tree(t)
	var buf bytes.Buffer
	if _, err := Pack(root, &buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	st, err := Unpack(bytes.NewReader(buf.Bytes()), dst, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 7 || st.Packages != 4 {
		t.Fatalf("stats %+v", st)
	}
	b, err := os.ReadFile(filepath.Join(dst, "node_modules/plugin/index.js"))
	if err != nil || string(b) != "module.exports = 1" {
		t.Fatalf("index.js: %q %v", b, err)
	}
	err = filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dst {
			return err
		}
		info, _ := d.Info()
		switch {
		case d.IsDir() && info.Mode().Perm() != 0o755:
			t.Errorf("%s: dir mode %v", p, info.Mode())
		case d.Type().IsRegular() && info.Mode().Perm() != 0o644 && info.Mode().Perm() != 0o755:
			t.Errorf("%s: file mode %v", p, info.Mode())
		case !d.IsDir() && !d.Type().IsRegular():
			t.Errorf("%s: type %v", p, d.Type())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(filepath.Join(dst, "node_modules/plugin/bin/cli.js")); info.Mode().Perm() != 0o755 {
		t.Fatalf("cli.js mode %v", info.Mode())
	}
}

type tarEntry struct {
	name string
	typ  byte
	body string
	link string
}

func archive(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			_, _ = tw.Write([]byte(e.body))
		}
	}
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

// Invariant: a hostile archive never writes outside its directory nor
// creates a link, and fails.
func TestUnpackRefuses(t *testing.T) {
	reg := func(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeReg, body: "x"} }
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		limit   int64
	}{
		{"parent escape", []tarEntry{reg("node_modules/../../escaped")}, 100},
		{"unclean", []tarEntry{reg("node_modules/a/../../escaped")}, 100},
		{"absolute", []tarEntry{reg("/tmp/escaped")}, 100},
		{"outside the root", []tarEntry{reg("package.json")}, 100},
		{"dot", []tarEntry{reg("node_modules/./x")}, 100},
		{"symlink", []tarEntry{{name: "node_modules/l", typ: tar.TypeSymlink, link: "/etc"}, reg("node_modules/l/passwd")}, 100},
		{"hard link", []tarEntry{{name: "node_modules/h", typ: tar.TypeLink, link: "/etc/passwd"}}, 100},
		{"device", []tarEntry{{name: "node_modules/d", typ: tar.TypeChar}}, 100},
		{"written twice", []tarEntry{reg("node_modules/x"), reg("node_modules/x")}, 100},
		{"too large", []tarEntry{reg("node_modules/a"), reg("node_modules/b")}, 1},
		{"backslash", []tarEntry{reg(`node_modules\..\..\x`)}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			if _, err := Unpack(bytes.NewReader(archive(t, tc.entries...)), dst, tc.limit); err == nil {
				t.Fatal("Unpack succeeded")
			}
			if _, err := os.Lstat(filepath.Join(parent, "escaped")); err == nil {
				t.Fatal("a file was written outside the destination")
			}
			_ = filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type()&fs.ModeSymlink != 0 {
					t.Errorf("link created: %s", p)
				}
				return nil
			})
		})
	}
	if _, err := Unpack(strings.NewReader("not gzip"), t.TempDir(), 100); err == nil {
		t.Fatal("Unpack of garbage succeeded")
	}
}

func TestValidEntryName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"node_modules", true},
		{"node_modules/", true},
		{"node_modules/ms/index.js", true},
		{"node_modules/@s/x/", true},
		{"node_modulesX/a", false},
		{"node_modules//a", false},
		{"node_modules/a/", true},
		{"", false},
		{"./node_modules/a", false},
		{"node_modules/a/..", false},
	} {
		if got := ValidEntryName(tc.name); got != tc.ok {
			t.Errorf("ValidEntryName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}
