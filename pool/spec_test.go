package pool

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/wharfhq/wharf/engine/enginetest"
)

// Invariant: the pooled container spec is the sandbox: every hardening setting is pinned
// here, so a change that loosens one fails a test.
func TestSpecSandbox(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.Limits = DefaultLimits
	cfg.SeccompProfile = `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}`
	s := Spec(cfg, "wharf-n1-abc")

	if !s.ReadOnlyRoot {
		t.Error("root file system is writable")
	}
	if !slices.Equal(s.CapDrop, []string{"ALL"}) {
		t.Errorf("cap drop %v, want ALL", s.CapDrop)
	}
	if !slices.Contains(s.SecurityOpt, "no-new-privileges") {
		t.Error("no-new-privileges missing")
	}
	if !slices.Contains(s.SecurityOpt, "seccomp="+cfg.SeccompProfile) {
		t.Errorf("seccomp profile not applied: %v", s.SecurityOpt)
	}
	if uid, _, _ := strings.Cut(s.User, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("user %q is root", s.User)
	}
	if s.Init {
		t.Error("engine init is on: it loses runner output on the engine's log follow (see Spec)")
	}
	// Only the code and module mounts, both read-only; nothing else of the host.
	if len(s.Mounts) != 2 {
		t.Fatalf("mounts %+v, want /app and /modules only", s.Mounts)
	}
	for _, m := range s.Mounts {
		if !m.ReadOnly || (m.Target != AppMount && m.Target != ModulesMount) {
			t.Errorf("mount %+v", m)
		}
		if strings.Contains(m.Source, "docker.sock") {
			t.Errorf("docker socket mounted: %+v", m)
		}
	}
	// Writable places are size-limited tmpfs without exec, suid or devices.
	for _, target := range []string{"/tmp", "/dev/shm"} {
		opts, ok := s.Tmpfs[target]
		if !ok {
			t.Errorf("%s is not a tmpfs of its own", target)
			continue
		}
		for _, want := range []string{"noexec", "nosuid", "nodev", "size="} {
			if !strings.Contains(opts, want) {
				t.Errorf("%s options %q lack %s", target, opts, want)
			}
		}
	}
	if s.MemoryBytes <= 0 || s.NanoCPUs <= 0 || s.PidsLimit <= 0 || s.NoFile <= 0 || s.LogConfig.Options["max-size"] == "" {
		t.Errorf("limits missing: %+v", s)
	}
	// Nothing of Wharf's own configuration reaches the container: the runner
	// gets its port and app dir, nothing else.
	for _, kv := range s.Env {
		name, _, _ := strings.Cut(kv, "=")
		if name != "WHARF_PORT" && name != "WHARF_APP_DIR" && name != "WHARF_LOG_RATE" {
			t.Errorf("unexpected variable %s in the container's environment", name)
		}
	}
	if len(s.Labels) != 4 || s.Labels[LabelSpec] == "" {
		t.Errorf("labels %v: a pooled container knows no tenant yet", s.Labels)
	}
}

func TestSpecWithoutProfileKeepsEngineDefault(t *testing.T) {
	s := Spec(testConfig(t, 1), "wharf-n1-abc")
	for _, o := range s.SecurityOpt {
		if strings.HasPrefix(o, "seccomp=") {
			t.Errorf("seccomp option %q without a profile", o)
		}
	}
}

// Invariant: containers of one configuration share the spec label whatever
// their names; any change of what the engine is asked (profile, limits,
// runtime) changes it, so a restart does not adopt containers created
// under other settings.
func TestSpecLabel(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.Limits = DefaultLimits
	base := Spec(cfg, "wharf-n1-a").Labels[LabelSpec]
	if Spec(cfg, "wharf-n1-b").Labels[LabelSpec] != base {
		t.Fatal("two containers of one pool have different spec labels")
	}
	changes := map[string]func(c *Config){
		"seccomp profile": func(c *Config) { c.SeccompProfile = `{"defaultAction":"SCMP_ACT_ERRNO"}` },
		"memory":          func(c *Config) { c.Limits.MemoryBytes *= 2 },
		"pids":            func(c *Config) { c.Limits.PidsLimit++ },
		"runtime":         func(c *Config) { c.Runtime = "runsc" },
		"modules dir":     func(c *Config) { c.ModulesDir += "-other" },
	}
	for what, change := range changes {
		c := cfg
		change(&c)
		if Spec(c, "wharf-n1-a").Labels[LabelSpec] == base {
			t.Errorf("a different %s keeps the spec label", what)
		}
	}
}

// Invariant: a restart adopts leftover pooled containers only when they were
// created with the current settings.
func TestReconcileSkipsOtherSpecs(t *testing.T) {
	f := enginetest.New()
	cfg := testConfig(t, 2)
	p := startPool(t, cfg, f)
	eventually(t, "pool full", func() bool { return p.Ready() == 2 })

	same, err := New(cfg, f, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if adopted, _, err := same.Reconcile(context.Background()); err != nil || adopted != 2 {
		t.Fatalf("same settings: adopted %d, %v", adopted, err)
	}
	stricter := cfg
	stricter.SeccompProfile = `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}`
	other, err := New(stricter, f, quiet())
	if err != nil {
		t.Fatal(err)
	}
	adopted, removed, err := other.Reconcile(context.Background())
	if err != nil || adopted != 0 || removed != 2 {
		t.Fatalf("new profile: adopted %d removed %d, %v; want 0 and 2", adopted, removed, err)
	}
}
