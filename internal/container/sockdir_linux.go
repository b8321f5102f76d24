package container

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"octo/internal/peercred"
)

// prepareSockDir makes dir (socket_dir/USER) ready for a new agent of uid:
// it exists, is a real directory owned by us with mode 01733, and holds only
// entries uid owns, and no socket. Mode 01733 lets the agent, running as
// the user, create its socket and state directory in a directory the control
// plane owns, while others can neither list it nor delete what they do not
// own; what they planted is removed here before each start, and ready checks
// who serves the socket.
func prepareSockDir(dir, sockName string, uid uint32) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || st.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%s is not a directory owned by uid %d: remove it", dir, os.Geteuid())
	}
	// Chmod, not Mkdir's mode: the umask would clear the write bits.
	if err := os.Chmod(dir, 0o733|fs.ModeSticky); err != nil {
		return fmt.Errorf("chmod socket directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read socket directory: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if e.Name() == sockName || fi.Sys().(*syscall.Stat_t).Uid != uid {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove stale entry of socket directory: %w", err)
			}
		}
	}
	return nil
}

// errNotReady says the agent socket does not answer (yet).
var errNotReady = errors.New("agent socket does not answer")

// ready reports whether an agent of uid listens on sock: the socket is
// owned by uid and whoever accepts a connection on it runs as uid.
func ready(ctx context.Context, sock string, uid uint32) error {
	fi, err := os.Lstat(sock)
	if err != nil {
		return errNotReady
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Sys().(*syscall.Stat_t).Uid != uid {
		return fmt.Errorf("%s is not a socket owned by uid %d", sock, uid)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return errNotReady
	}
	defer conn.Close()
	cred, err := peercred.Get(conn)
	if err != nil {
		return fmt.Errorf("agent socket %s: %w", sock, err)
	}
	if cred.UID != uid {
		return fmt.Errorf("agent socket %s is served by uid %d, not %d", sock, cred.UID, uid)
	}
	return nil
}
