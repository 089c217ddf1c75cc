package sandbox

import "syscall"

// Linux address families a function may open sockets in.
const (
	afUnix    = 1
	afInet    = 2
	afInet6   = 10
	afNetlink = 16 // getifaddrs (os.networkInterfaces) and the resolver's interface checks
)

// Personalities: PER_LINUX, and 0xffffffff, which only queries the current one.
const (
	perLinux = 0x0
	perQuery = 0xffffffff
)

// denied lists what Wharf's profile refuses on top of Docker's default, by
// reason. Docker's default already refuses most of these to a container
// without capabilities, but through rules that depend on capabilities and
// kernel versions; listing them here makes the refusal unconditional and
// visible, and answers them with ENOSYS, the errno programs already treat as
// "this kernel lacks the feature" and fall back from (libuv does for io_uring).
var denied = map[string]string{}

func deny(why string, names ...string) {
	for _, n := range names {
		denied[n] = why
	}
}

func init() {
	deny("debugging and reading other processes' memory; Docker allows ptrace since kernel 4.8",
		"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise")
	deny("mounting file systems and changing the root",
		"mount", "umount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
		"open_tree_attr", "mount_setattr", "pivot_root", "chroot")
	deny("new namespaces: the usual first step of container escapes (user namespaces reach privileged kernel code)",
		"unshare", "setns")
	deny("clone3 hides its flags behind a pointer the filter cannot read; glibc falls back to clone, whose namespace flags the profile refuses",
		"clone3")
	deny("the kernel keyring is not namespaced",
		"keyctl", "add_key", "request_key")
	deny("BPF programs, userfaultfd and io_uring: large kernel attack surface reachable without privileges",
		"bpf", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register")
	deny("performance counters expose hardware and kernel state",
		"perf_event_open", "lookup_dcookie")
	deny("kernel modules",
		"init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module")
	deny("the system clock is shared with the host",
		"settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime", "clock_adjtime64")
	deny("rebooting, kexec and swap",
		"reboot", "kexec_load", "kexec_file_load", "swapon", "swapoff")
	deny("host-wide accounting, quotas, logs and terminals",
		"acct", "quotactl", "quotactl_fd", "syslog", "vhangup", "nfsservctl", "sysfs", "_sysctl", "uselib", "ustat")
	deny("file handles bypass path-based checks",
		"name_to_handle_at", "open_by_handle_at")
	deny("raw I/O ports and legacy x86 modes",
		"iopl", "ioperm", "vm86", "vm86old", "modify_ldt")
	deny("NUMA memory placement affects the host's other workloads",
		"mbind", "set_mempolicy", "set_mempolicy_home_node", "migrate_pages", "move_pages")
	deny("fanotify watches file systems beyond the container",
		"fanotify_init")
}

// narrowed syscalls are allowed with these argument values only.
var narrowed = []Narrow{
	{Name: "socket", Index: 0, Values: []uint64{afUnix, afInet, afInet6, afNetlink},
		Why: "only unix, IP and netlink sockets: rarely used families (AF_ALG, AF_VSOCK, AF_TIPC, AF_RDS, ...) are where kernel socket bugs cluster"},
	{Name: "personality", Index: 0, Values: []uint64{perLinux, perQuery},
		Why: "query the personality or keep PER_LINUX; no other execution domain (e.g. READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE)"},
}

// WharfPolicy is how Wharf's profile departs from Docker's default.
func WharfPolicy() Policy {
	deny := make(map[string]string, len(denied))
	for k, v := range denied {
		deny[k] = v
	}
	return Policy{Deny: deny, DenyErrno: uint(syscall.ENOSYS), Narrow: narrowed, NativeOnly: true}
}

// Denied returns the syscalls Wharf's profile refuses and why.
func Denied() map[string]string { return WharfPolicy().Deny }
