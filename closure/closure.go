// Package closure owns the archive format of a built module: the
// node_modules tree npm installed for one name@version, as a gzipped tar of
// directories and regular files only. The builder packs it; each node's module
// cache unpacks it. Both sides refuse anything else, so a hostile package can
// neither smuggle a link out of the tree nor make a node write outside it.
package closure

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wharfhq/wharf/npmspec"
)

// Root is the one top-level directory of a closure.
const Root = "node_modules"

// MaxFiles bounds the entries of one closure, whatever their size.
const MaxFiles = 200_000

// ErrTooLarge: the closure exceeds its size limit.
var ErrTooLarge = errors.New("closure exceeds the size limit")

// Stats describe a closure.
type Stats struct {
	Files    int      // regular files
	Packages int      // package.json files at package roots
	Unpacked int64    // bytes of the regular files
	Peers    []string // peerDependencies named by any package of the closure
}

// epoch is every entry's modification time, so identical trees pack into
// identical bytes (and the same sha256).
var epoch = time.Unix(0, 0).UTC()

// Pack writes root/node_modules as a gzipped tar to w: directories (0755)
// and regular files (0644, or 0755 when executable), owned by root, in
// lexical order. npm's .bin directories are left out: they hold only symlinks
// to package scripts, and nothing runs them (there is no shell at run time).
// npm extracts registry packages without links, so any other symlink, device
// or FIFO fails the pack. It stops with ErrTooLarge once the regular files
// exceed limit bytes.
func Pack(root string, w io.Writer, limit int64) (Stats, error) {
	var st Stats
	peers := map[string]bool{}
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return st, err
	}
	tw := tar.NewWriter(zw)
	err = filepath.WalkDir(filepath.Join(root, Root), func(p string, d fs.DirEntry, err error) error {
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
			if st.Unpacked > limit || st.Files > MaxFiles {
				return ErrTooLarge
			}
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, info.Size(), fileMode(int64(mode))
		default:
			return fmt.Errorf("%s is not a regular file or directory (%v); closures hold no links or devices", name, mode.Type())
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
		// A short copy must fail rather than write a corrupt archive.
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
	st.Peers = slices.Sorted(maps.Keys(peers))
	return st, nil
}

// fileMode is 0755 for a file with any execute bit, else 0644.
func fileMode(mode int64) int64 {
	if mode&0o111 != 0 {
		return 0o755
	}
	return 0o644
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
