package images

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// This file finds what the image needs on the host: node, its shared
// libraries and dynamic loader, and npm.

// resolveNode returns the real path of the node binary: path, or "node" on
// $PATH when path is empty, with symlinks resolved.
func resolveNode(path string) (string, error) {
	if path == "" {
		p, err := exec.LookPath("node")
		if err != nil {
			return "", fmt.Errorf("find node: %w", err)
		}
		path = p
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("find node: %w", err)
	}
	return real, nil
}

// sharedLib is one library the dynamic loader maps for a binary.
type sharedLib struct {
	Soname string // the name the binary asks for ("libc.so.6"); "" for the loader
	Path   string // the absolute path ldd resolved it to
}

// linkedLibs returns the shared libraries of the ELF binary at path, as ldd
// resolves them, plus its dynamic loader (PT_INTERP), which ldd lists too.
// A static binary has none.
func linkedLibs(path string) ([]sharedLib, error) {
	interp, err := elfInterpreter(path)
	if err != nil {
		return nil, err
	}
	if interp == "" {
		return nil, nil // statically linked
	}
	cmd := exec.Command("ldd", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	libs, err := parseLDD(out)
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	for _, l := range libs {
		if l.Path == interp {
			return libs, nil
		}
	}
	return append(libs, sharedLib{Path: interp}), nil
}

// elfInterpreter returns the program interpreter an ELF binary names, or ""
// when it has none (static).
func elfInterpreter(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s is not an ELF binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("read program interpreter of %s: %w", path, err)
		}
		return string(bytes.TrimRight(b, "\x00")), nil
	}
	return "", nil
}

// parseLDD parses ldd's output. Lines look like
//
//	linux-vdso.so.1 (0x00007ffd...)                         kernel-provided: skipped
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)    a library
//	/lib64/ld-linux-x86-64.so.2 (0x...)                     the loader
//	libfoo.so.1 => not found                                an error
func parseLDD(out []byte) ([]sharedLib, error) {
	var libs []sharedLib
	var missing []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.Contains(line, "statically linked") {
			continue
		}
		if i := strings.Index(line, " (0x"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		soname, path, arrow := strings.Cut(line, "=>")
		soname, path = strings.TrimSpace(soname), strings.TrimSpace(path)
		switch {
		case arrow && path == "not found":
			missing = append(missing, soname)
		case arrow && filepath.IsAbs(path):
			libs = append(libs, sharedLib{Soname: soname, Path: filepath.Clean(path)})
		case arrow:
			// "libfoo.so => (0x...)": an old-glibc vdso line; nothing to copy.
		case filepath.IsAbs(soname):
			libs = append(libs, sharedLib{Path: filepath.Clean(soname)})
		default:
			// linux-vdso.so.1, linux-gate.so.1: provided by the kernel.
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("libraries not found: %s", strings.Join(missing, ", "))
	}
	return libs, nil
}

// findNPM returns the root directory of the host's npm package (the directory
// holding bin/npm-cli.js and a bundled node_modules). It looks at the real
// path of `npm` on $PATH, then `npm root -g`, then lib/node_modules/npm next
// to node's bin directory.
func findNPM(nodeReal string) (string, error) {
	var tried []string
	try := func(dir string) (string, bool) {
		if dir == "" {
			return "", false
		}
		dir = filepath.Clean(dir)
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		tried = append(tried, dir)
		return dir, isNPMRoot(dir)
	}
	if p, err := exec.LookPath("npm"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && filepath.Base(real) == "npm-cli.js" {
			if dir, ok := try(filepath.Dir(filepath.Dir(real))); ok {
				return dir, nil
			}
		}
		if out, err := exec.Command(p, "root", "-g").Output(); err == nil {
			if dir, ok := try(filepath.Join(strings.TrimSpace(string(out)), "npm")); ok {
				return dir, nil
			}
		}
	}
	if dir, ok := try(filepath.Join(filepath.Dir(filepath.Dir(nodeReal)), "lib", "node_modules", "npm")); ok {
		return dir, nil
	}
	return "", fmt.Errorf("find npm: no npm package with bin/npm-cli.js and a bundled node_modules (tried %s); "+
		"install npm from nodejs.org or NodeSource (Debian's npm package spreads its dependencies over /usr/share/nodejs)",
		strings.Join(tried, ", "))
}

// isNPMRoot reports whether dir holds a self-contained npm package.
func isNPMRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return false
	}
	var pkg struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(b, &pkg) != nil || pkg.Name != "npm" {
		return false
	}
	for _, p := range []string{"bin/npm-cli.js", "node_modules"} {
		if _, err := os.Stat(filepath.Join(dir, p)); errors.Is(err, os.ErrNotExist) {
			return false
		}
	}
	return true
}
