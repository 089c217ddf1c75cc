package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Profile is a seccomp profile in the JSON format Docker's --security-opt
// seccomp=<json> accepts (moby/profiles/seccomp), reduced to the fields its
// default profile uses. Decoding rejects unknown fields, so a newer base
// profile using a field this code would silently drop fails the tests.
type Profile struct {
	DefaultAction   string    `json:"defaultAction"`
	DefaultErrnoRet *uint     `json:"defaultErrnoRet,omitempty"`
	ArchMap         []Arch    `json:"archMap,omitempty"`
	Syscalls        []Syscall `json:"syscalls"`
}

// Arch is one native architecture and the other syscall ABIs a process on it may use.
type Arch struct {
	Architecture     string   `json:"architecture"`
	SubArchitectures []string `json:"subArchitectures"`
}

// Syscall is one rule: an action for a list of syscalls, optionally only
// when arguments match and when the includes/excludes conditions hold.
type Syscall struct {
	Names    []string `json:"names"`
	Action   string   `json:"action"`
	ErrnoRet *uint    `json:"errnoRet,omitempty"`
	Args     []Arg    `json:"args,omitempty"`
	Comment  string   `json:"comment,omitempty"`
	Includes *Filter  `json:"includes,omitempty"`
	Excludes *Filter  `json:"excludes,omitempty"`
}

// Arg compares one syscall argument.
type Arg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo,omitempty"`
	Op       string `json:"op"`
}

// Filter is a rule condition evaluated by the engine when it loads the profile.
type Filter struct {
	Caps      []string `json:"caps,omitempty"`
	Arches    []string `json:"arches,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

// Seccomp actions used here.
const (
	ActAllow = "SCMP_ACT_ALLOW"
	ActErrno = "SCMP_ACT_ERRNO"
)

// ParseProfile decodes a profile strictly.
func ParseProfile(b []byte) (Profile, error) {
	var p Profile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Profile{}, fmt.Errorf("seccomp profile: %w", err)
	}
	return p, nil
}

// Narrow replaces every rule of one syscall by rules allowing it only when
// argument Index equals one of Values.
type Narrow struct {
	Name   string
	Index  uint
	Values []uint64
	Why    string
}

// Policy says how Wharf's profile differs from its base.
type Policy struct {
	// Deny maps each denied syscall to the reason. A denied syscall leaves
	// every rule of the base and is answered by one rule returning DenyErrno.
	Deny map[string]string
	// DenyErrno is the errno of denied syscalls.
	DenyErrno uint
	// Narrow lists syscalls allowed only with given argument values.
	Narrow []Narrow
	// NativeOnly drops the secondary syscall ABIs (32-bit x86 on amd64, ...),
	// so a process cannot reach the kernel through a second syscall table
	// whose calls (socketcall, ipc) the rules cannot inspect the same way.
	NativeOnly bool
}

// Derive builds a profile from base for containers that hold no capability
// at all (Wharf drops every one):
//   - a rule that applies only with a capability can never apply: dropped;
//   - a capability in an exclusion never excludes: removed from it;
//   - denied syscalls leave every rule and get one errno rule of their own;
//   - narrowed syscalls keep only the argument values the policy lists.
//
// The result is deterministic for a given base and policy.
func Derive(base Profile, pol Policy) (Profile, error) {
	if base.DefaultAction != ActErrno {
		return Profile{}, fmt.Errorf("derive: base default action %q is not %s: an allowlist is required", base.DefaultAction, ActErrno)
	}
	narrowed := map[string]bool{}
	for _, n := range pol.Narrow {
		if len(n.Values) == 0 {
			return Profile{}, fmt.Errorf("derive: narrowing %s allows no value", n.Name)
		}
		if _, ok := pol.Deny[n.Name]; ok {
			return Profile{}, fmt.Errorf("derive: %s is both denied and narrowed", n.Name)
		}
		narrowed[n.Name] = true
	}
	out := Profile{DefaultAction: base.DefaultAction, DefaultErrnoRet: base.DefaultErrnoRet}
	for _, a := range base.ArchMap {
		a.SubArchitectures = slices.Clone(a.SubArchitectures)
		if pol.NativeOnly || a.SubArchitectures == nil {
			a.SubArchitectures = []string{}
		}
		out.ArchMap = append(out.ArchMap, a)
	}
	for _, r := range base.Syscalls {
		if r.Includes != nil && len(r.Includes.Caps) > 0 {
			continue // needs a capability the containers never have
		}
		r.Includes = cloneFilter(r.Includes)
		r.Excludes = cloneFilter(r.Excludes)
		if r.Excludes != nil {
			r.Excludes.Caps = nil
			if r.Excludes.empty() {
				r.Excludes = nil
			}
		}
		if r.Includes != nil && r.Includes.empty() {
			r.Includes = nil
		}
		r.Names = slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool {
			_, denied := pol.Deny[n]
			return denied || narrowed[n]
		})
		if len(r.Names) == 0 {
			continue
		}
		r.Args = slices.Clone(r.Args)
		out.Syscalls = append(out.Syscalls, r)
	}
	for _, n := range pol.Narrow {
		for _, v := range n.Values {
			out.Syscalls = append(out.Syscalls, Syscall{
				Names: []string{n.Name}, Action: ActAllow,
				Args:    []Arg{{Index: n.Index, Value: v, Op: "SCMP_CMP_EQ"}},
				Comment: "wharf: " + n.Why,
			})
		}
	}
	if len(pol.Deny) > 0 {
		errno := pol.DenyErrno
		out.Syscalls = append(out.Syscalls, Syscall{
			Names: sortedKeys(pol.Deny), Action: ActErrno, ErrnoRet: &errno,
			Comment: "wharf: denied syscalls, see sandbox/policy.go for the reason of each",
		})
	}
	if err := check(out, pol); err != nil {
		return Profile{}, err
	}
	return out, nil
}

// check verifies what Derive promises, independently of how it got there.
func check(p Profile, pol Policy) error {
	var problems []error
	for i, r := range p.Syscalls {
		if len(r.Names) == 0 {
			problems = append(problems, fmt.Errorf("rule %d names no syscall", i))
		}
		if r.Includes != nil && len(r.Includes.Caps) > 0 {
			problems = append(problems, fmt.Errorf("rule %d depends on capabilities %v", i, r.Includes.Caps))
		}
		if r.Action != ActAllow {
			continue
		}
		for _, n := range r.Names {
			if _, ok := pol.Deny[n]; ok {
				problems = append(problems, fmt.Errorf("denied syscall %s is allowed by rule %d", n, i))
			}
		}
	}
	return errors.Join(problems...)
}

// Allows reports whether some rule of p allows name (with any arguments).
func (p Profile) Allows(name string) bool {
	for _, r := range p.Syscalls {
		if r.Action == ActAllow && slices.Contains(r.Names, name) {
			return true
		}
	}
	return false
}

// JSON renders p the way it is shipped: indented, stable.
func (p Profile) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (f *Filter) empty() bool {
	return f == nil || (len(f.Caps) == 0 && len(f.Arches) == 0 && f.MinKernel == "")
}

func cloneFilter(f *Filter) *Filter {
	if f == nil {
		return nil
	}
	c := *f
	c.Caps = slices.Clone(f.Caps)
	c.Arches = slices.Clone(f.Arches)
	return &c
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
