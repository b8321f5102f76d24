package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// listen returns the socket systemd passed (LISTEN_FDS), or binds --socket.
func listen(o *options) (ln net.Listener, activated bool, err error) {
	lns, err := activation.Listeners() // called once: it unsets LISTEN_FDS
	if err != nil {
		return nil, false, fmt.Errorf("socket activation: %w", err)
	}
	switch {
	case len(lns) > 1:
		return nil, false, fmt.Errorf("socket activation: got %d sockets, want 1", len(lns))
	case len(lns) == 1 && lns[0] == nil:
		return nil, false, errors.New("socket activation: the passed socket is not a listening stream socket")
	case len(lns) == 1:
		return lns[0], true, nil
	}
	path := o.socket
	if path == "" {
		rt := os.Getenv("XDG_RUNTIME_DIR")
		if rt == "" {
			return nil, false, errors.New("no socket: not socket-activated, no --socket and no $XDG_RUNTIME_DIR")
		}
		path = filepath.Join(rt, "octo-agent.sock")
	}
	ln, err = bind(path, o.socketMode)
	return ln, false, err
}

var errLiveAgent = errors.New("another agent is listening")

// bind listens on path with mode. A socket left by a dead agent is removed;
// a live agent answering on path, or a file that is not a socket, is an error.
func bind(path string, mode os.FileMode) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen %s: the path exists and is not a socket; remove it or choose another", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: %w there; stop it first", path, errLiveAgent)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("listen %s: probe existing socket: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	old := unix.Umask(0o177) // no wider than 0600 until the chmod below
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

// loginShell returns name's shell from /etc/passwd, or "" (os/user does not
// report shells).
func loginShell(name string) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name {
			return fields[6]
		}
	}
	return ""
}
