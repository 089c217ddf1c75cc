package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wharfhq/wharf/sandbox"
)

func TestSeccompProfileSetting(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(good, []byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`{"syscalls":`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		setting string
		want    string // "" means the engine's default
		err     string
	}{
		{"", sandbox.SeccompProfile(), ""},
		{"engine-default", "", ""},
		{good, `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}`, ""},
		{bad, "", "is not a seccomp profile"},
		{filepath.Join(dir, "missing.json"), "", "no such file"},
	}
	for _, tt := range tests {
		got, err := seccompProfile(tt.setting)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.setting, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %.40q, %v", tt.setting, got, err)
		}
	}
}
