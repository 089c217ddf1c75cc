package images

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A dynamically linked host binary goes in with its loader and libraries;
// data, files and directories land where asked; the archive is deterministic.
func TestScratchContext(t *testing.T) {
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no `true` binary on this host")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "x.cfg")
	if err := os.WriteFile(conf, []byte("setting 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Scratch{
		Dockerfile: "FROM scratch\nCOPY rootfs/ /\n",
		Binaries:   map[string]string{"/usr/bin/true": bin},
		Files:      map[string]string{"/etc/x.cfg": conf},
		Data:       map[string][]byte{"/etc/passwd": []byte("root:x:0:0::/:/nonexistent\n")},
		Dirs:       map[string]int64{"/tmp": 0o1777},
		Symlinks:   map[string]string{"/usr/bin/yes": "true"},
	}
	tarBytes, hash, err := ScratchContext(s)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := readTar(t, tarBytes)
	for _, want := range []string{"Dockerfile", "rootfs/usr/bin/true", "rootfs/etc/x.cfg", "rootfs/etc/passwd", "rootfs/tmp"} {
		if _, ok := files[want]; !ok {
			t.Errorf("context lacks %s", want)
		}
	}
	if l := files["rootfs/usr/bin/yes"].hdr; l == nil || l.Typeflag != tar.TypeSymlink || l.Linkname != "true" {
		t.Errorf("symlink /usr/bin/yes: %+v", l)
	}
	if files["rootfs/tmp"].hdr.Mode != 0o1777 {
		t.Errorf("/tmp mode %o", files["rootfs/tmp"].hdr.Mode)
	}
	if files["rootfs/usr/bin/true"].hdr.Mode != modeExec {
		t.Errorf("binary mode %o", files["rootfs/usr/bin/true"].hdr.Mode)
	}
	interp, err := elfInterpreter(bin)
	if err != nil {
		t.Fatal(err)
	}
	if interp != "" {
		if _, ok := files["rootfs"+interp]; !ok {
			t.Errorf("dynamic loader %s missing", interp)
		}
		libc := false
		for name := range files {
			libc = libc || strings.Contains(name, "libc.so")
		}
		if !libc {
			t.Error("libc missing for a dynamic binary")
		}
	}
	again, hash2, err := ScratchContext(s)
	if err != nil || hash2 != hash || string(again) != string(tarBytes) {
		t.Fatalf("not deterministic: %v %s %s", err, hash, hash2)
	}
	if err := os.WriteFile(conf, []byte("setting 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, hash3, err := ScratchContext(s); err != nil || hash3 == hash {
		t.Fatalf("changed file, same hash: %v", err)
	}
}

func TestScratchContextRejects(t *testing.T) {
	cases := map[string]Scratch{
		"no FROM":       {Dockerfile: "COPY rootfs/ /"},
		"relative path": {Dockerfile: "FROM scratch", Data: map[string][]byte{"etc/x": nil}},
		"missing file":  {Dockerfile: "FROM scratch", Files: map[string]string{"/x": "/nonexistent/wharf-x"}},
		"missing bin":   {Dockerfile: "FROM scratch", Binaries: map[string]string{"/x": "/nonexistent/wharf-x"}},
	}
	for name, s := range cases {
		if _, _, err := ScratchContext(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A shared object (a dlopen plugin) comes with the libraries it links.
func TestScratchContextLibraries(t *testing.T) {
	libc, err := filepath.Glob("/lib/*/libm.so.6")
	if err != nil || len(libc) == 0 {
		t.Skip("no libm.so.6 on this host")
	}
	tarBytes, _, err := ScratchContext(Scratch{Dockerfile: "FROM scratch", Libraries: map[string]string{"/plugins/libm.so": libc[0]}})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := readTar(t, tarBytes)
	if _, ok := files["rootfs/plugins/libm.so"]; !ok {
		t.Fatal("library missing")
	}
	found := false
	for name := range files {
		found = found || strings.HasSuffix(name, "/libc.so.6")
	}
	if !found {
		t.Error("the library's own dependency (libc) is missing")
	}
}
