package builder

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wharfhq/wharf/npmspec"
)

// ClosureRoot is the one top-level directory of a closure archive.
const ClosureRoot = "node_modules"

// maxFiles bounds the entries of one closure, whatever their size.
const maxFiles = 200_000

// ErrTooLarge: the closure exceeds the size limit.
var ErrTooLarge = errors.New("closure exceeds the size limit")

// Stats describe a packed closure.
type Stats struct {
	Files    int      // regular files
	Packages int      // package.json files at package roots
	Unpacked int64    // bytes of the regular files
	Peers    []string // peerDependencies named by any package of the closure
}

// epoch is every entry's modification time, so identical trees pack into
// identical bytes (and the same sha256).
var epoch = time.Unix(0, 0).UTC()

// Pack writes root/node_modules as a gzipped tar to w: directories (0755),
// regular files (0644, or 0755 when executable) and symlinks that stay inside
// the tree, owned by root, in lexical order. npm's .bin directories are left
// out (nothing runs them: there is no shell at run time). Anything else (a
// device, a FIFO, a symlink leaving the tree) fails the build: npm never makes
// one. It stops with ErrTooLarge once the regular files exceed limit bytes.
func Pack(root string, w io.Writer, limit int64) (Stats, error) {
	var st Stats
	peers := map[string]bool{}
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return st, err
	}
	tw := tar.NewWriter(zw)
	base := filepath.Join(root, ClosureRoot)
	err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() && d.Name() == ".bin" && path.Base(path.Dir(name)) == "node_modules" {
			return fs.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, ModTime: epoch, Format: tar.FormatPAX}
		switch mode := info.Mode(); {
		case mode.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
		case mode.IsRegular():
			st.Files++
			st.Unpacked += info.Size()
			if st.Unpacked > limit || st.Files > maxFiles {
				return ErrTooLarge
			}
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, info.Size(), 0o644
			if mode&0o111 != 0 {
				hdr.Mode = 0o755
			}
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if !SymlinkInside(name, target) {
				return fmt.Errorf("symlink %s -> %s leaves the module's tree", name, target)
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
		default:
			return fmt.Errorf("%s is neither a file, a directory nor a symlink (%v)", name, mode.Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		// The container has exited: the size cannot change under us, but a
		// short copy must still fail rather than write a corrupt archive.
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if isManifest(name) {
			st.Packages++
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			for _, p := range manifestPeers(io.LimitReader(f, 1<<20)) {
				peers[p] = true
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := tw.Close(); err != nil {
		return st, err
	}
	if err := zw.Close(); err != nil {
		return st, err
	}
	st.Peers = slices.Sorted(func(yield func(string) bool) {
		for p := range peers {
			if !yield(p) {
				return
			}
		}
	})
	return st, nil
}

// SymlinkInside tells whether a symlink at name (a slash path relative to the
// archive root) pointing at target stays inside the archive's top directory.
func SymlinkInside(name, target string) bool {
	if target == "" || path.IsAbs(target) || strings.Contains(target, "\\") {
		return false
	}
	resolved := path.Join(path.Dir(name), target)
	return resolved == ClosureRoot || strings.HasPrefix(resolved, ClosureRoot+"/")
}

// isManifest tells whether name is the package.json at a package's root:
// .../node_modules/<name>/package.json or .../node_modules/@scope/<name>/package.json.
func isManifest(name string) bool {
	parts := strings.Split(name, "/")
	n := len(parts)
	if n < 3 || parts[n-1] != "package.json" {
		return false
	}
	if parts[n-3] == "node_modules" && !strings.HasPrefix(parts[n-2], "@") {
		return true
	}
	return n >= 4 && parts[n-4] == "node_modules" && strings.HasPrefix(parts[n-3], "@")
}

// manifestPeers returns the valid package names among a manifest's
// peerDependencies; a manifest that does not parse names none.
func manifestPeers(r io.Reader) []string {
	var m struct {
		PeerDependencies map[string]any `json:"peerDependencies"`
	}
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return nil
	}
	var out []string
	for name := range m.PeerDependencies {
		if npmspec.ValidName(name) {
			out = append(out, name)
		}
	}
	return out
}
