//go:build linux

// Command sysprobe calls syscalls a seccomp profile may refuse, each with
// harmless arguments, and prints one JSON object: syscall name -> "ok" or the
// errno's name. Run inside a container, it shows what the container's profile
// lets through: Wharf's profile answers the syscalls it denies with ENOSYS,
// which none of them returns on a kernel that has it, so ENOSYS tells a
// seccomp refusal apart from a refusal for lack of capabilities (EPERM).
//
// Build it static (CGO_ENABLED=0) to run it in the FROM-scratch runtime image.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

type probe struct {
	name string
	call func() error
}

func sys(trap uintptr, a ...uintptr) func() error {
	var args [6]uintptr
	copy(args[:], a)
	return func() error {
		r, _, errno := unix.Syscall6(trap, args[0], args[1], args[2], args[3], args[4], args[5])
		if errno != 0 {
			return errno
		}
		// Close whatever descriptor a successful call returned (userfaultfd, keyctl ids are harmless).
		if trap == unix.SYS_USERFAULTFD || trap == unix.SYS_IO_URING_SETUP {
			_ = unix.Close(int(r))
		}
		return nil
	}
}

func str(s string) uintptr {
	p, err := unix.BytePtrFromString(s)
	if err != nil {
		panic(err)
	}
	return uintptr(unsafe.Pointer(p))
}

const (
	atFdcwd      = ^uintptr(99) // -100
	badFd        = ^uintptr(0)  // -1
	keySpecSess  = ^uintptr(2)  // -3
	afCAN        = 29
	perLinux32   = 0x0008
	perQuery     = 0xffffffff
	ptraceGetReg = 12
)

func probes() []probe {
	pid := uintptr(os.Getpid())
	var tx unix.Timex // modes 0: read the clock state only
	fh := make([]byte, 128)
	*(*uint32)(unsafe.Pointer(&fh[0])) = 64 // handle_bytes
	list := []probe{
		{"ptrace", sys(unix.SYS_PTRACE, ptraceGetReg, pid, 0, 0)}, // ESRCH: not our tracee
		{"process_vm_readv", sys(unix.SYS_PROCESS_VM_READV, pid, 0, 0, 0, 0, 0)},
		{"kcmp", sys(unix.SYS_KCMP, pid, pid, 0, 0, 0)},
		{"pidfd_getfd", sys(unix.SYS_PIDFD_GETFD, badFd, 0, 0)},
		{"mount", sys(unix.SYS_MOUNT, str("none"), str("/nonexistent"), str("tmpfs"), 0, 0)},
		{"umount2", sys(unix.SYS_UMOUNT2, str("/nonexistent"), 0)},
		{"fsopen", sys(unix.SYS_FSOPEN, str("tmpfs"), 0)},
		{"open_tree", sys(unix.SYS_OPEN_TREE, atFdcwd, str("/nonexistent"), 0)},
		{"pivot_root", sys(unix.SYS_PIVOT_ROOT, str("/nonexistent"), str("/nonexistent"))},
		{"chroot", sys(unix.SYS_CHROOT, str("/"))},
		{"unshare", sys(unix.SYS_UNSHARE, 0)}, // a no-op when allowed
		{"setns", sys(unix.SYS_SETNS, badFd, 0)},
		{"clone3", sys(unix.SYS_CLONE3, 0, 0)},
		{"keyctl", sys(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, keySpecSess, 0)},
		{"add_key", sys(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0)},
		{"request_key", sys(unix.SYS_REQUEST_KEY, 0, 0, 0, 0)},
		{"bpf", sys(unix.SYS_BPF, unix.BPF_PROG_LOAD, 0, 0)},
		{"userfaultfd", sys(unix.SYS_USERFAULTFD, 0)},
		{"io_uring_setup", sys(unix.SYS_IO_URING_SETUP, 0, 0)},
		{"io_uring_enter", sys(unix.SYS_IO_URING_ENTER, badFd, 0, 0, 0, 0, 0)},
		{"io_uring_register", sys(unix.SYS_IO_URING_REGISTER, badFd, 0, 0, 0)},
		{"perf_event_open", sys(unix.SYS_PERF_EVENT_OPEN, 0, 0, badFd, badFd, 0)},
		{"init_module", sys(unix.SYS_INIT_MODULE, 0, 0, str(""))},
		{"finit_module", sys(unix.SYS_FINIT_MODULE, badFd, str(""), 0)},
		{"delete_module", sys(unix.SYS_DELETE_MODULE, str("wharf-none"), 0)},
		{"kexec_file_load", sys(unix.SYS_KEXEC_FILE_LOAD, badFd, badFd, 0, 0, 0)},
		{"reboot", sys(unix.SYS_REBOOT, 0, 0, 0, 0)}, // wrong magic: refused even when allowed
		{"swapon", sys(unix.SYS_SWAPON, str("/nonexistent"), 0)},
		{"swapoff", sys(unix.SYS_SWAPOFF, str("/nonexistent"))},
		{"acct", sys(unix.SYS_ACCT, 0)},
		{"settimeofday", sys(unix.SYS_SETTIMEOFDAY, 0, 0)},
		{"clock_settime", sys(unix.SYS_CLOCK_SETTIME, unix.CLOCK_REALTIME, 0)},
		{"adjtimex", sys(unix.SYS_ADJTIMEX, uintptr(unsafe.Pointer(&tx)))},
		{"clock_adjtime", sys(unix.SYS_CLOCK_ADJTIME, unix.CLOCK_REALTIME, uintptr(unsafe.Pointer(&tx)))},
		{"name_to_handle_at", sys(unix.SYS_NAME_TO_HANDLE_AT, atFdcwd, str("/"), uintptr(unsafe.Pointer(&fh[0])), uintptr(unsafe.Pointer(&fh[64])), 0)},
		{"open_by_handle_at", sys(unix.SYS_OPEN_BY_HANDLE_AT, badFd, 0, 0)},
		{"syslog", sys(unix.SYS_SYSLOG, 10, 0, 0)}, // SYSLOG_ACTION_SIZE_BUFFER
		{"vhangup", sys(unix.SYS_VHANGUP)},
		{"quotactl", sys(unix.SYS_QUOTACTL, 0, 0, 0, 0)},
		{"set_mempolicy", sys(unix.SYS_SET_MEMPOLICY, 0, 0, 0)}, // MPOL_DEFAULT: a no-op when allowed
		{"migrate_pages", sys(unix.SYS_MIGRATE_PAGES, 0, 0, 0, 0)},
		{"fanotify_init", sys(unix.SYS_FANOTIFY_INIT, 0, 0)},
		{"personality(PER_LINUX32)", func() error {
			err := sys(unix.SYS_PERSONALITY, perLinux32)()
			if err == nil {
				_ = sys(unix.SYS_PERSONALITY, 0)() // back to PER_LINUX
			}
			return err
		}},
		{"personality(query)", sys(unix.SYS_PERSONALITY, perQuery)},
		{"socket(AF_UNIX)", socket(unix.AF_UNIX, unix.SOCK_STREAM)},
		{"socket(AF_INET)", socket(unix.AF_INET, unix.SOCK_STREAM)},
		{"socket(AF_NETLINK)", socket(unix.AF_NETLINK, unix.SOCK_RAW)},
		{"socket(AF_CAN)", socket(afCAN, unix.SOCK_RAW)},
		// Allowed by every profile: a control showing that probing works at all.
		{"getpid", sys(unix.SYS_GETPID)},
	}
	return append(list, archProbes()...)
}

func socket(family, typ int) func() error {
	return func() error {
		fd, err := unix.Socket(family, typ, 0)
		if err == nil {
			_ = unix.Close(fd)
		}
		return err
	}
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
		return fmt.Sprintf("errno %d", int(errno))
	}
	return err.Error()
}

func main() {
	// As root outside a container some probes would act on the host (acct,
	// vhangup, settimeofday with null arguments are no-ops, but not promises).
	if os.Geteuid() == 0 {
		fmt.Fprintln(os.Stderr, "sysprobe: refusing to run as root; run it in a container as an unprivileged user")
		os.Exit(2)
	}
	out := map[string]string{}
	for _, p := range probes() {
		out[p.name] = result(p.call())
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
