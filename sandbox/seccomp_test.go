package sandbox

import (
	"bytes"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite seccomp.json from docker-default.json and policy.go")

// The shipped file is exactly what Derive makes of the base and the policy.
func TestShippedProfile(t *testing.T) {
	want, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("seccomp.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal([]byte(SeccompProfile()), want) {
		t.Fatal("seccomp.json is stale: run go test ./sandbox -run TestShippedProfile -update")
	}
}

func u(n uint) *uint { return &n }

func TestDerive(t *testing.T) {
	base := Profile{
		DefaultAction: ActErrno, DefaultErrnoRet: u(1),
		ArchMap: []Arch{{Architecture: "SCMP_ARCH_X86_64", SubArchitectures: []string{"SCMP_ARCH_X86"}}},
		Syscalls: []Syscall{
			{Names: []string{"read", "ptrace", "write"}, Action: ActAllow},
			{Names: []string{"bpf", "mount"}, Action: ActAllow, Includes: &Filter{Caps: []string{"CAP_SYS_ADMIN"}}},
			{Names: []string{"clone"}, Action: ActAllow, Args: []Arg{{Index: 0, Value: 0x7e020000, Op: "SCMP_CMP_MASKED_EQ"}},
				Excludes: &Filter{Caps: []string{"CAP_SYS_ADMIN"}, Arches: []string{"s390x"}}},
			{Names: []string{"clone3"}, Action: ActErrno, ErrnoRet: u(38), Excludes: &Filter{Caps: []string{"CAP_SYS_ADMIN"}}},
			{Names: []string{"socket"}, Action: ActAllow, Args: []Arg{{Index: 0, Value: 38, Op: "SCMP_CMP_LT"}}},
			{Names: []string{"arch_prctl"}, Action: ActAllow, Includes: &Filter{Arches: []string{"amd64"}}},
			{Names: []string{"process_vm_readv"}, Action: ActAllow, Includes: &Filter{MinKernel: "4.8"}},
		},
	}
	tests := []struct {
		name  string
		pol   Policy
		check func(t *testing.T, p Profile)
		err   string
	}{
		{
			name: "capability rules go, capability exclusions no longer exclude",
			pol:  Policy{},
			check: func(t *testing.T, p Profile) {
				if p.Allows("bpf") || p.Allows("mount") {
					t.Error("a rule needing CAP_SYS_ADMIN survived")
				}
				for _, r := range p.Syscalls {
					if slices.Contains(r.Names, "clone") && (r.Excludes == nil || len(r.Excludes.Caps) != 0 || !slices.Equal(r.Excludes.Arches, []string{"s390x"})) {
						t.Errorf("clone exclusion %+v, want arches s390x only", r.Excludes)
					}
					if slices.Contains(r.Names, "clone3") && (r.Excludes != nil || r.Action != ActErrno) {
						t.Errorf("clone3 rule %+v, want an unconditional errno rule", r)
					}
				}
				if !p.Allows("read") || !p.Allows("ptrace") || !p.Allows("arch_prctl") {
					t.Error("unconditional rules lost")
				}
				if got := p.ArchMap[0].SubArchitectures; !slices.Equal(got, []string{"SCMP_ARCH_X86"}) {
					t.Errorf("sub-architectures %v kept without NativeOnly", got)
				}
			},
		},
		{
			name: "denied syscalls leave every rule and get one errno rule",
			pol:  Policy{Deny: map[string]string{"ptrace": "x", "process_vm_readv": "x", "clone3": "x", "keyctl": "x"}, DenyErrno: 38},
			check: func(t *testing.T, p Profile) {
				for _, n := range []string{"ptrace", "process_vm_readv", "clone3", "keyctl"} {
					if p.Allows(n) {
						t.Errorf("%s still allowed", n)
					}
				}
				last := p.Syscalls[len(p.Syscalls)-1]
				if last.Action != ActErrno || *last.ErrnoRet != 38 || !slices.Equal(last.Names, []string{"clone3", "keyctl", "process_vm_readv", "ptrace"}) {
					t.Errorf("deny rule %+v", last)
				}
				for _, r := range p.Syscalls[:len(p.Syscalls)-1] {
					if slices.Contains(r.Names, "clone3") {
						t.Error("clone3 appears in two rules")
					}
				}
				if !p.Allows("read") || !p.Allows("write") {
					t.Error("the other syscalls of a rule went with the denied one")
				}
			},
		},
		{
			name: "narrowing replaces the base's argument rules",
			pol:  Policy{Narrow: []Narrow{{Name: "socket", Index: 0, Values: []uint64{1, 2}}}},
			check: func(t *testing.T, p Profile) {
				var vals []uint64
				for _, r := range p.Syscalls {
					if slices.Contains(r.Names, "socket") {
						if len(r.Args) != 1 || r.Args[0].Op != "SCMP_CMP_EQ" {
							t.Errorf("socket rule %+v", r)
							continue
						}
						vals = append(vals, r.Args[0].Value)
					}
				}
				if !slices.Equal(vals, []uint64{1, 2}) {
					t.Errorf("socket allowed for %v, want [1 2]", vals)
				}
			},
		},
		{
			name: "native ABI only",
			pol:  Policy{NativeOnly: true},
			check: func(t *testing.T, p Profile) {
				if len(p.ArchMap[0].SubArchitectures) != 0 {
					t.Errorf("sub-architectures %v", p.ArchMap[0].SubArchitectures)
				}
				if len(base.ArchMap[0].SubArchitectures) != 1 {
					t.Error("Derive modified its input")
				}
			},
		},
		{name: "denied and narrowed at once", pol: Policy{Deny: map[string]string{"socket": "x"}, Narrow: []Narrow{{Name: "socket", Values: []uint64{1}}}}, err: "both denied and narrowed"},
		{name: "narrowing to nothing", pol: Policy{Narrow: []Narrow{{Name: "socket"}}}, err: "allows no value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Derive(base, tt.pol)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, p)
		})
	}
}

func TestDeriveRefusesADenylistBase(t *testing.T) {
	if _, err := Derive(Profile{DefaultAction: ActAllow}, WharfPolicy()); err == nil {
		t.Fatal("a base that allows by default was accepted")
	}
}

// The shipped profile, read back as Docker will: the brief's syscalls are
// refused, node's everyday ones are allowed, and it is stricter than the base.
func TestShippedProfileContents(t *testing.T) {
	p, err := ParseProfile([]byte(SeccompProfile()))
	if err != nil {
		t.Fatal(err)
	}
	base, err := DockerDefault()
	if err != nil {
		t.Fatal(err)
	}
	mustDeny := []string{"ptrace", "mount", "umount2", "keyctl", "add_key", "request_key", "bpf", "userfaultfd",
		"unshare", "setns", "init_module", "finit_module", "delete_module", "clock_settime", "settimeofday",
		"adjtimex", "clock_adjtime", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "pivot_root",
		"chroot", "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register", "process_vm_readv",
		"process_vm_writev", "open_by_handle_at", "name_to_handle_at", "clone3"}
	for _, n := range mustDeny {
		if p.Allows(n) {
			t.Errorf("%s is allowed", n)
		}
		if _, ok := Denied()[n]; !ok {
			t.Errorf("%s has no reason in policy.go", n)
		}
	}
	for _, n := range []string{"read", "write", "openat", "mmap", "mprotect", "futex", "epoll_pwait", "execve",
		"clone", "wait4", "getrandom", "accept4", "connect", "statx", "rt_sigaction", "prctl", "socket", "personality"} {
		if !p.Allows(n) {
			t.Errorf("%s is refused: node needs it", n)
		}
	}
	if p.DefaultAction != ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
		t.Errorf("default action %s/%v, want errno EPERM", p.DefaultAction, p.DefaultErrnoRet)
	}
	// Stricter: everything it allows unconditionally the base allows too.
	for _, r := range p.Syscalls {
		if r.Action != ActAllow {
			continue
		}
		for _, n := range r.Names {
			if !base.Allows(n) {
				t.Errorf("%s is allowed by Wharf's profile but not by Docker's", n)
			}
		}
	}
	for _, a := range p.ArchMap {
		if len(a.SubArchitectures) != 0 {
			t.Errorf("%s keeps secondary ABIs %v", a.Architecture, a.SubArchitectures)
		}
	}
}

func TestParseProfileIsStrict(t *testing.T) {
	if _, err := ParseProfile([]byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[],"flags":["x"]}`)); err == nil {
		t.Fatal("an unknown field was accepted")
	}
}
