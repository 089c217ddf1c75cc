package images

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// tree is a set of files to be written as a deterministic tar archive:
// sorted names, mtime 0, owner 0:0, no user/group names, fixed modes.
type tree struct {
	entries map[string]*entry // keyed by clean relative path ("rootfs/usr/bin/node")
}

type entry struct {
	typ      byte // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode     int64
	src      string // regular file copied from the host (symlinks followed), or
	data     []byte // inline content
	linkname string // symlink target
}

func newTree() *tree { return &tree{entries: map[string]*entry{}} }

// Fixed modes. A host file keeps only whether it is executable.
const (
	modeDir  = 0o755
	modeFile = 0o644
	modeExec = 0o755
	modeLink = 0o777
)

func cleanRel(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (t *tree) put(name string, e *entry) error {
	name = cleanRel(name)
	if name == "" {
		return fmt.Errorf("empty path in build context")
	}
	if old, ok := t.entries[name]; ok {
		if old.typ == e.typ && old.mode == e.mode && old.src == e.src && old.linkname == e.linkname && string(old.data) == string(e.data) {
			return nil
		}
		return fmt.Errorf("two different files for %s in the build context", name)
	}
	t.entries[name] = e
	return nil
}

// addHostFile copies the host file src (following symlinks) to name.
func (t *tree) addHostFile(name, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	mode := int64(modeFile)
	if fi.Mode().Perm()&0o111 != 0 {
		mode = modeExec
	}
	return t.put(name, &entry{typ: tar.TypeReg, mode: mode, src: src})
}

func (t *tree) addData(name string, data []byte, mode int64) error {
	return t.put(name, &entry{typ: tar.TypeReg, mode: mode, data: data})
}

func (t *tree) addDir(name string, mode int64) error {
	return t.put(name, &entry{typ: tar.TypeDir, mode: mode})
}

func (t *tree) addSymlink(name, target string) error {
	return t.put(name, &entry{typ: tar.TypeSymlink, mode: modeLink, linkname: target})
}

// addHostDir copies the host directory src to name. Symlinks whose target
// stays inside src are kept as relative symlinks; others are replaced by the
// file they point to. skip reports (by path relative to src) what to leave out.
func (t *tree) addHostDir(name, src string, skip func(rel string) bool) error {
	return fs.WalkDir(os.DirFS(src), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel != "." && skip != nil && skip(rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		dst, host := path.Join(name, rel), path.Join(src, rel)
		switch {
		case d.IsDir():
			return t.addDir(dst, modeDir)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(host)
			if err != nil {
				return err
			}
			if !path.IsAbs(target) {
				if inside := path.Join(path.Dir(rel), target); inside != ".." && !strings.HasPrefix(inside, "../") {
					return t.addSymlink(dst, target)
				}
			}
			return t.addHostFile(dst, host) // follows the link; fails for a directory or a dangling link
		case d.Type().IsRegular():
			return t.addHostFile(dst, host)
		default:
			return nil // sockets, fifos, devices: nothing a runtime needs
		}
	})
}

// addParents adds a directory entry for every missing parent directory.
func (t *tree) addParents() error {
	for name := range t.entries {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			e, ok := t.entries[dir]
			if !ok {
				t.entries[dir] = &entry{typ: tar.TypeDir, mode: modeDir}
				continue
			}
			if e.typ != tar.TypeDir {
				return fmt.Errorf("%s is both a directory and a file in the build context", dir)
			}
		}
	}
	return nil
}

// size estimates the tar size, to allocate the buffer once.
func (t *tree) size() int64 {
	var n int64 = 1024
	for _, e := range t.entries {
		n += 1024
		switch {
		case e.src != "":
			if fi, err := os.Stat(e.src); err == nil {
				n += fi.Size()
			}
		default:
			n += int64(len(e.data))
		}
	}
	return n
}

// write writes the tree as a tar archive to w.
func (t *tree) write(w io.Writer) error {
	if err := t.addParents(); err != nil {
		return err
	}
	names := make([]string, 0, len(t.entries))
	for name := range t.entries {
		names = append(names, name)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, name := range names {
		e := t.entries[name]
		hdr := &tar.Header{Name: name, Typeflag: e.typ, Mode: e.mode, ModTime: time.Unix(0, 0), Linkname: e.linkname}
		if e.typ == tar.TypeDir {
			hdr.Name += "/"
		}
		var err error
		switch {
		case e.src != "":
			err = writeHostFile(tw, hdr, e.src)
		default:
			hdr.Size = int64(len(e.data))
			if err = tw.WriteHeader(hdr); err == nil {
				_, err = tw.Write(e.data)
			}
		}
		if err != nil {
			return fmt.Errorf("add %s to the build context: %w", name, err)
		}
	}
	return tw.Close()
}

func writeHostFile(tw *tar.Writer, hdr *tar.Header, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr.Size = fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
