package wtstorage

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// listenUnix creates the socket name in dir, connectable by any uid: the
// containers' runner is unprivileged (pool.RunnerUser), and only the one
// container that mounts dir can see it.
//
// A data directory can make the path longer than a socket address holds (108
// bytes), so the socket is bound through /proc/self/fd/N/name, N an open
// descriptor of dir: the kernel resolves the short path to the same place.
func listenUnix(dir, name string) (*net.UnixListener, error) {
	final := filepath.Join(dir, name)
	if err := os.Remove(final); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("storage socket: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("storage socket: %w", err)
	}
	defer d.Close()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Net: "unix", Name: fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name)})
	if err != nil {
		return nil, fmt.Errorf("storage socket in %s: %w", dir, err)
	}
	// The bound name means nothing once d is closed; the file is removed by
	// its real path (Server.Detach).
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(final, 0o666); err != nil {
		_ = ln.Close()
		_ = os.Remove(final)
		return nil, fmt.Errorf("storage socket: %w", err)
	}
	return ln, nil
}
