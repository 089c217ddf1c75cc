package secretbox

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ParseKey parses a key given as 64 hex characters or as base64 (standard or
// URL alphabet, padded or not) of exactly 32 bytes. Surrounding whitespace is ignored.
// Errors never contain the key material.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("secretbox: empty key")
	}
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) == KeySize {
				return k, nil
			}
			return nil, fmt.Errorf("secretbox: key decodes to %d bytes, want %d", len(k), KeySize)
		}
	}
	return nil, fmt.Errorf("secretbox: key is neither %d hex characters nor base64 of %d bytes", 2*KeySize, KeySize)
}

// LoadOrCreateKey returns the key stored in the file at path, creating the file
// with a new random key (hex, mode 0600) when it does not exist. Creation is
// atomic and exclusive: the file appears complete or not at all, and when two
// processes race exactly one key wins and both return it.
func LoadOrCreateKey(path string) ([]byte, error) {
	if k, err := readKeyFile(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("secretbox: generating key: %w", err)
	}
	created, err := createExclusive(path, []byte(hex.EncodeToString(key)+"\n"))
	if err != nil {
		return nil, err
	}
	if !created { // someone else created it first; theirs wins
		return readKeyFile(path)
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secretbox: reading key file: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("secretbox: key file %s: %w", path, err)
	}
	return k, nil
}

// createExclusive writes data to a temporary file beside path and hard-links
// it into place, which fails if path exists; so readers never see a partial
// file. It reports false when path already existed. On file systems without
// hard links it falls back to O_CREATE|O_EXCL.
func createExclusive(path string, data []byte) (bool, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("secretbox: creating key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return false, fmt.Errorf("secretbox: creating key file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := writeSync(tmp, data); err != nil {
		return false, err
	}
	err = os.Link(tmpName, path)
	switch {
	case err == nil:
		syncDir(dir)
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	}
	// No hard links here: exclusive create, write in place.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("secretbox: creating key file: %w", err)
	}
	if err := writeSync(f, data); err != nil {
		os.Remove(path)
		return false, err
	}
	syncDir(dir)
	return true, nil
}

// writeSync writes, fsyncs and closes f (created with mode 0600 by CreateTemp/OpenFile).
func writeSync(f *os.File, data []byte) error {
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("secretbox: writing key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("secretbox: writing key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("secretbox: writing key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("secretbox: writing key file: %w", err)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
