// Package unixsock binds a Unix socket at a path without stealing it: a
// live server's socket is refused, a dead one's replaced.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrInUse matches a path where a live server is listening.
var ErrInUse = errors.New("another server is listening")

// Listen listens on path with mode. A socket file no one listens on (left
// by a server that died) is removed first; a live server answering on
// path, or a file that is not a socket, is an error and stays untouched.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen %s: the path exists and is not a socket; remove it or choose another", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: %w there; stop it first", path, ErrInUse)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("listen %s: probe existing socket: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// No wider than 0600 between bind and chmod: no one connects before
	// the mode is what the caller chose.
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set socket mode: %w", err)
	}
	return ln, nil
}
