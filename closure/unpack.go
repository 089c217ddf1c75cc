package closure

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxNameLen bounds an entry's path.
const maxNameLen = 4096

// ValidEntryName tells whether a tar entry name may be unpacked: a clean,
// relative slash path inside Root (a directory's name may end in '/').
func ValidEntryName(name string) bool {
	name = strings.TrimSuffix(name, "/")
	if name == "" || len(name) > maxNameLen || strings.ContainsAny(name, "\\\x00") {
		return false
	}
	if path.Clean(name) != name || path.IsAbs(name) {
		return false
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." || part == "." {
			return false
		}
	}
	return name == Root || strings.HasPrefix(name, Root+"/")
}

// Unpack extracts a closure read from r into dst (an empty directory):
// directories become 0755 and files 0644 or 0755, whatever the archive
// says; anything but a directory or a regular file, a name outside Root, an
// entry written twice, or more than limit bytes or MaxFiles files fails it.
// On failure dst holds a partial tree the caller removes.
func Unpack(r io.Reader, dst string, limit int64) (Stats, error) {
	var st Stats
	zr, err := gzip.NewReader(r)
	if err != nil {
		return st, fmt.Errorf("closure: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("closure: %w", err)
		}
		if !ValidEntryName(h.Name) {
			return st, fmt.Errorf("closure: entry %q is outside %s/", h.Name, Root)
		}
		target := filepath.Join(dst, filepath.FromSlash(strings.TrimSuffix(h.Name, "/")))
		switch h.Typeflag {
		case tar.TypeDir:
			// Parents are never links: nothing but directories and files is ever created.
			if err := os.MkdirAll(target, 0o755); err != nil {
				return st, fmt.Errorf("closure: %w", err)
			}
			if err := os.Chmod(target, 0o755); err != nil {
				return st, fmt.Errorf("closure: %w", err)
			}
		case tar.TypeReg:
			st.Files++
			st.Unpacked += h.Size
			if h.Size < 0 || st.Unpacked > limit || st.Files > MaxFiles {
				return st, ErrTooLarge
			}
			if err := writeFile(target, tr, h.Size, os.FileMode(fileMode(h.Mode))); err != nil {
				return st, fmt.Errorf("closure: %s: %w", h.Name, err)
			}
			if isManifest(h.Name) {
				st.Packages++
			}
		default:
			return st, fmt.Errorf("closure: entry %q is not a file or directory (type %q)", h.Name, h.Typeflag)
		}
	}
	// Drain the gzip stream, so a caller hashing r sees every byte.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return st, fmt.Errorf("closure: %w", err)
	}
	return st, nil
}

func writeFile(target string, r io.Reader, size int64, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil { // exact, whatever the umask
		f.Close()
		return err
	}
	return f.Close()
}
