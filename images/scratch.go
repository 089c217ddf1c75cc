package images

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Scratch describes a FROM scratch image assembled from host files, the way
// the runtime image is: other images Wharf needs without a registry (the
// Wharf node itself, a load balancer for the local cluster) are built with it.
// Every path key is an absolute path inside the image.
type Scratch struct {
	// Dockerfile is the build's Dockerfile. It sees the image's files under
	// rootfs/, so it usually starts with `FROM scratch` and `COPY rootfs/ /`.
	Dockerfile string
	// Binaries are host executables (symlinks resolved), each copied with
	// every library ldd lists for it and its dynamic loader.
	Binaries map[string]string
	// Libraries are host shared objects a binary loads at run time (dlopen
	// plugins ldd cannot see from the binary), each copied with the
	// libraries ldd lists for it.
	Libraries map[string]string
	// Files are host files copied as they are (symlinks resolved).
	Files map[string]string
	// Symlinks are symbolic links: image path -> target.
	Symlinks map[string]string
	// Data are files with the given content (mode 0644).
	Data map[string][]byte
	// Dirs are directories with the given mode (e.g. 01777 for /tmp).
	Dirs map[string]int64
}

// ScratchContext returns the build context (a deterministic tar archive) of
// s and its hex sha256: the same host files give the same bytes, so the hash
// can name the image.
func ScratchContext(s Scratch) (tarBytes []byte, hash string, err error) {
	if !strings.Contains(s.Dockerfile, "FROM") {
		return nil, "", errors.New("scratch image: the Dockerfile has no FROM line")
	}
	t := newTree()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	root := func(p string) (string, error) {
		if !path.IsAbs(p) {
			return "", fmt.Errorf("scratch image: %q is not an absolute path in the image", p)
		}
		return path.Join("rootfs", p), nil
	}
	add(t.addData("Dockerfile", []byte(s.Dockerfile), modeFile))
	for dst, src := range s.Binaries {
		name, err := root(dst)
		if err != nil {
			add(err)
			continue
		}
		real, err := filepath.EvalSymlinks(src)
		if err != nil {
			add(fmt.Errorf("scratch image: %w", err))
			continue
		}
		add(t.addHostFile(name, real))
		libs, err := linkedLibs(real)
		if err != nil {
			add(fmt.Errorf("scratch image: libraries of %s: %w", real, err))
			continue
		}
		addLibs(t, libs, add)
	}
	for dst, src := range s.Libraries {
		name, err := root(dst)
		if err != nil {
			add(err)
			continue
		}
		add(t.addHostFile(name, src))
		libs, err := sharedObjectLibs(src)
		if err != nil {
			add(fmt.Errorf("scratch image: libraries of %s: %w", src, err))
			continue
		}
		addLibs(t, libs, add)
	}
	for dst, target := range s.Symlinks {
		name, err := root(dst)
		if err == nil {
			err = t.addSymlink(name, target)
		}
		add(err)
	}
	for dst, src := range s.Files {
		name, err := root(dst)
		if err == nil {
			err = t.addHostFile(name, src)
		}
		add(err)
	}
	for dst, data := range s.Data {
		name, err := root(dst)
		if err == nil {
			err = t.addData(name, data, modeFile)
		}
		add(err)
	}
	for dst, mode := range s.Dirs {
		name, err := root(dst)
		if err == nil {
			err = t.addDir(name, mode)
		}
		add(err)
	}
	if len(errs) > 0 {
		return nil, "", errors.Join(errs...)
	}
	buf := bytes.NewBuffer(make([]byte, 0, t.size()))
	h := sha256.New()
	if err := t.write(io.MultiWriter(buf, h)); err != nil {
		return nil, "", fmt.Errorf("scratch image: write build context: %w", err)
	}
	return buf.Bytes(), hex.EncodeToString(h.Sum(nil)), nil
}

// addLibs puts libraries at the paths ldd resolved them to, and under the
// name the binary asks for when that differs.
func addLibs(t *tree, libs []sharedLib, add func(error)) {
	for _, l := range libs {
		add(t.addHostFile(path.Join("rootfs", l.Path), l.Path))
		if l.Soname != "" && !strings.Contains(l.Soname, "/") && l.Soname != filepath.Base(l.Path) {
			add(t.addHostFile(path.Join("rootfs", path.Dir(l.Path), l.Soname), l.Path))
		}
	}
}

// sharedObjectLibs lists what ldd resolves for a shared object (which, unlike
// an executable, names no loader of its own).
func sharedObjectLibs(path string) ([]sharedLib, error) {
	cmd := exec.Command("ldd", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return parseLDD(out)
}
