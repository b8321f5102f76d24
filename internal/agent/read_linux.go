package agent

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// The fast path of File.Open opens with openat2(2) and RESOLVE_BENEATH
// below a descriptor of the workspace: the kernel refuses any resolution
// that leaves it (.., absolute or escaping symlinks, magic links), as
// os.Root does, in one system call and without an *os.File (which costs a
// poller registration that fails for regular files, a finalizer and
// allocations). Any failure falls back to os.Root, so that errors keep one
// wording and the fast path never decides a refusal.

// noOpenat2 is set once openat2 turned out not to exist (Linux < 5.6).
var noOpenat2 atomic.Bool

// workspaceDir is a descriptor of the workspace directory, beside its
// os.Root, for openat2's fast path: fd is -1 when it could not be opened
// (os.Root then serves alone).
type workspaceDir struct {
	f  *os.File
	fd int
}

func openWorkspaceDir(r *os.Root) workspaceDir {
	f, err := r.Open(".")
	if err != nil {
		return workspaceDir{fd: -1}
	}
	return workspaceDir{f: f, fd: int(f.Fd())}
}

func (d workspaceDir) close() {
	if d.f != nil {
		d.f.Close()
	}
}

// errNoOpenat2 sends a caller to os.Root: openat2 does not exist, or
// refused; os.Root then decides, with the usual wording.
var errNoOpenat2 = errors.New("openat2 fast path unavailable")

// openat2Read opens rel (cleaned, workspace-relative) read-only below the
// workspace directory dirfd with RESOLVE_BENEATH, O_NONBLOCK (a FIFO must not hang the
// call), O_CLOEXEC and O_NOCTTY. Any error is errNoOpenat2.
func openat2Read(dirfd int, rel string) (int, error) {
	if dirfd < 0 || noOpenat2.Load() {
		return -1, errNoOpenat2
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(dirfd, rel, &how)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Openat2(dirfd, rel, &how)
	}
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			noOpenat2.Store(true)
		}
		return -1, errNoOpenat2
	}
	return fd, nil
}

// statInfo describes the regular file rel from its stat, with size.
func statInfo(rel string, st *unix.Stat_t, size int64) agentrpc.FileInfo {
	return agentrpc.FileInfo{Name: path.Base(rel), Type: agentrpc.TypeFile, Size: size,
		Mode: fs.FileMode(st.Mode & 0o777), ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec), Inode: st.Ino}
}
