package peercred

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Get returns the credentials of the process that connected c.
// Only Unix domain sockets carry them; other connections give ErrUnsupported.
func Get(c net.Conn) (Cred, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Cred{}, ErrUnsupported
	}
	if _, ok := c.(*net.UnixConn); !ok {
		return Cred{}, ErrUnsupported
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var ucred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		ucred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("getsockopt SO_PEERCRED: %w", serr)
	}
	return Cred{PID: ucred.Pid, UID: ucred.Uid, GID: ucred.Gid}, nil
}
