package container

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"octo/internal/peercred"
)

// prepareSockDir makes dir (socket_dir/USER) ready for a new agent of uid.
// It is a real directory owned by the control plane that only the control
// plane and uid may enter or write: mode 0700 plus a POSIX ACL entry
// granting uid rwx (ls shows drwxrwx---+). Nobody else can create, replace
// or remove anything in it, so no one can block the agent's bind or plant
// files the agent would use. Then every entry in it is removed: what
// cannot be (a non-empty directory another uid made while the directory
// was still writable by others, as it was before ACLs were used) is left,
// out of the way of the socket path.
func prepareSockDir(dir, sockName string, uid uint32) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	if fi, err := os.Stat(parent); err != nil {
		return err
	} else if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s is writable by every user, who could take the name of another user's socket directory: chmod o-w it (0755, owned by the control plane's user)", parent)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create socket directory: %w", err)
	}
	notOurs := fmt.Errorf("%s is not a directory owned by uid %d: remove it", dir, os.Geteuid())
	if fi, err := os.Lstat(dir); err != nil {
		return err
	} else if !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		return notOurs
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return notOurs
	} else if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	if err := lockSockDir(d, uid); err != nil {
		return err
	}
	return clearSockDir(d, sockName)
}

// lockSockDir lets only its owner, the control plane, and uid into d.
func lockSockDir(d *os.File, uid uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return &fs.PathError{Op: "stat", Path: d.Name(), Err: err}
	}
	if st.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%s is not a directory owned by uid %d: remove it", d.Name(), os.Geteuid())
	}
	// Closes the directory to others first (clearing the sticky bit and the
	// mode 01733 earlier versions used), then opens it to uid alone.
	if err := unix.Fchmod(int(d.Fd()), 0o700); err != nil {
		return &fs.PathError{Op: "chmod", Path: d.Name(), Err: err}
	}
	err := unix.Fsetxattr(int(d.Fd()), "system.posix_acl_access", userACL(uid), 0)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%s: the file system has no POSIX ACLs, which give the agent's uid alone access to its socket directory: put [container] socket_dir on one that has (tmpfs, ext4, xfs, btrfs; mount option acl): %w", d.Name(), err)
	} else if err != nil {
		return &fs.PathError{Op: "set ACL of", Path: d.Name(), Err: err}
	}
	return nil
}

// userACL is the system.posix_acl_access value owner rwx, user uid rwx,
// group none, mask rwx, other none (linux/posix_acl_xattr.h: version 2,
// then little-endian {tag u16, perm u16, id u32} sorted by tag).
func userACL(uid uint32) []byte {
	const undefined = ^uint32(0)
	entries := []struct {
		tag, perm uint16
		id        uint32
	}{
		{0x01, 7, undefined}, // ACL_USER_OBJ
		{0x02, 7, uid},       // ACL_USER
		{0x04, 0, undefined}, // ACL_GROUP_OBJ
		{0x10, 7, undefined}, // ACL_MASK
		{0x20, 0, undefined}, // ACL_OTHER
	}
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// clearSockDir removes every entry of d. One it cannot remove is left,
// but renamed aside when it is on the socket path.
func clearSockDir(d *os.File, sockName string) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read socket directory: %w", err)
	}
	dfd := int(d.Fd())
	for _, name := range names {
		err := unix.Unlinkat(dfd, name, 0)
		if errors.Is(err, unix.EISDIR) {
			err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
		}
		if err == nil || errors.Is(err, unix.ENOENT) || name != sockName {
			continue
		}
		// A directory another uid filled and closed to us: renaming it
		// within d needs write access to d only.
		var b [8]byte
		rand.Read(b[:])
		if rerr := unix.Renameat(dfd, name, dfd, ".stale-"+hex.EncodeToString(b[:])); rerr != nil {
			return fmt.Errorf("clear agent socket path %s: %w", filepath.Join(d.Name(), name), errors.Join(err, rerr))
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
