package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// Down deletes a data root only when a cluster of that name marked it.
func TestRemoveDataRoot(t *testing.T) {
	mk := func(marker string) string {
		dir := filepath.Join(t.TempDir(), "root")
		if err := os.MkdirAll(filepath.Join(dir, "n1"), 0o700); err != nil {
			t.Fatal(err)
		}
		if marker != "" {
			if err := os.WriteFile(filepath.Join(dir, markerFile), []byte(marker+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, tc := range []struct {
		marker  string
		removed bool
	}{{"local", true}, {"other", false}, {"", false}} {
		dir := mk(tc.marker)
		err := RemoveDataRoot(dir, "local")
		_, statErr := os.Stat(dir)
		if gone := os.IsNotExist(statErr); gone != tc.removed || (err == nil) != tc.removed {
			t.Errorf("marker %q: removed=%v err=%v", tc.marker, gone, err)
		}
	}
	if err := RemoveDataRoot(filepath.Join(t.TempDir(), "missing"), "local"); err != nil {
		t.Errorf("missing root: %v", err)
	}
}
