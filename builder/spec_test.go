package builder

import (
	"slices"
	"strings"
	"testing"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/npmspec"
)

// The build container is as locked down as a tenant's, with its own limits,
// and runs exactly npm install of one exact module without lifecycle scripts.
func TestSpec(t *testing.T) {
	cfg := Config{ID: "n1", Image: "wharf-runtime:abc", WorkDir: "/w", Registry: "https://npm.example/"}.withDefaults()
	s := Spec(cfg, "wharf-build-n1-x", npmspec.Ref{Name: "@types/node", Version: "20.1.0"}, "/w/b/out")
	if !s.ReadOnlyRoot || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Contains(s.SecurityOpt, "no-new-privileges") {
		t.Fatalf("not hardened: %+v", s)
	}
	if s.MemoryBytes != DefaultMemory || s.NanoCPUs != DefaultNanoCPUs || s.PidsLimit != DefaultPids {
		t.Fatalf("limits %d %d %d", s.MemoryBytes, s.NanoCPUs, s.PidsLimit)
	}
	if s.User != "10001:10001" || s.Network != "" {
		t.Fatalf("user %q network %q", s.User, s.Network)
	}
	if len(s.Mounts) != 1 || s.Mounts[0] != (engine.Mount{Source: "/w/b/out", Target: "/out"}) {
		t.Fatalf("mounts %+v", s.Mounts)
	}
	if tm := s.Tmpfs["/tmp"]; !strings.Contains(tm, "noexec") || !strings.Contains(tm, "size=536870912") {
		t.Fatalf("tmpfs %q", tm)
	}
	if s.Labels[engine.LabelNode] != "n1" || s.Labels[engine.LabelRole] != RoleBuild || s.Labels[LabelModule] != "@types/node@20.1.0" {
		t.Fatalf("labels %v", s.Labels)
	}
	if !slices.Equal(s.Entrypoint, []string{"/usr/bin/node"}) {
		t.Fatalf("entrypoint %v", s.Entrypoint)
	}
	want := []string{"/usr/bin/npm", "install", "@types/node@20.1.0", "--prefix", "/out", "--no-save", "--no-package-lock",
		"--ignore-scripts", "--no-update-notifier", "--no-fund", "--no-audit", "--registry", "https://npm.example/", "--cache", "/tmp/npm"}
	if !slices.Equal(s.Cmd, want) {
		t.Fatalf("cmd %q\nwant %q", s.Cmd, want)
	}
	if !slices.Contains(s.Env, "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt") || !slices.Contains(s.Env, "HOME=/tmp") {
		t.Fatalf("env %v", s.Env)
	}

	// On the build network npm goes through its proxy for http and https.
	cfg.Network, cfg.Proxy = "wharf-build-n1", "http://172.18.0.1:40000"
	s = Spec(cfg, "wharf-build-n1-x", npmspec.Ref{Name: "ms", Version: "2.1.3"}, "/w/b/out")
	if s.Network != "wharf-build-n1" {
		t.Fatalf("network %q", s.Network)
	}
	if tail := s.Cmd[len(s.Cmd)-4:]; !slices.Equal(tail, []string{"--proxy", cfg.Proxy, "--https-proxy", cfg.Proxy}) {
		t.Fatalf("cmd %q", s.Cmd)
	}
}

func TestValidateRegistry(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"https://registry.npmjs.org/", true},
		{"http://127.0.0.1:4873", true},
		{"registry.npmjs.org", false},
		{"file:///tmp/x", false},
		{"https://", false},
		{"https://a b/", false},
	} {
		if err := ValidateRegistry(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidateRegistry(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestClassifyNPM(t *testing.T) {
	const e404 = `npm error code E404
npm error 404 Not Found - GET https://registry.npmjs.org/nope - Not found
npm error 404
npm error A complete log of this run can be found in: /tmp/npm/_logs/x.log
`
	for _, tc := range []struct {
		name      string
		exit      int
		oom       bool
		log       string
		permanent bool
		contains  string
	}{
		{"unknown package", 1, false, e404, true, "E404: 404 Not Found - GET https://registry.npmjs.org/nope"},
		{"no such version", 1, false, "npm error code ETARGET\nnpm error notarget No matching version found for ms@9.9.9.\n", true, "No matching version"},
		{"peer conflict", 1, false, "npm error code ERESOLVE\nnpm error ERESOLVE unable to resolve dependency tree\n", true, "ERESOLVE"},
		{"old npm prefix", 1, false, "npm ERR! code E404\nnpm ERR! 404 Not Found\n", true, "404 Not Found"},
		{"network", 1, false, "npm error code ETIMEDOUT\nnpm error network request failed\n", false, "ETIMEDOUT"},
		{"registry down", 1, false, "npm error code E503\nnpm error 503 Service Unavailable\n", false, "E503"},
		{"dns", 1, false, "npm error code EAI_AGAIN\nnpm error request to https://registry.npmjs.org/ms failed\n", false, "EAI_AGAIN"},
		{"no code (crash)", 134, false, "Segmentation fault\n", false, "exit 134"},
		{"out of memory", 137, true, "", true, "out of memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := classifyNPM(tc.exit, tc.oom, tc.log)
			if f.Permanent != tc.permanent || !strings.Contains(f.Message, tc.contains) {
				t.Fatalf("classifyNPM = %+v; want permanent=%v and %q", f, tc.permanent, tc.contains)
			}
		})
	}
}
