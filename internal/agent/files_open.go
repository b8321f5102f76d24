package agent

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// Open opens a file for reading. A small file comes back inline; a larger
// one, on a connection that passes descriptors and when asked, as a
// read-only descriptor the control plane serves from; else only its
// description, and the caller reads it with File.Read. A directory is
// described, not opened.
func (f *FileService) Open(req *agentrpc.OpenRequest, reply *agentrpc.OpenReply) error {
	return f.c.do(func() error {
		rel, err := cleanRel(req.Path)
		if err != nil {
			return err
		}
		if fi, data, ok := inlineFast(f.c.s.wsDir.fd, rel, req.Inline); ok {
			reply.Info, reply.Inline, reply.Data = fi, true, data
			return nil
		}
		fh, err := openRead(f.c.s.root, f.c.s.wsDir.fd, rel)
		if err != nil {
			if errors.Is(err, errIsDir) {
				fi, err := f.stat(f.c.s.root, rel)
				reply.Info = fi
				return err
			}
			return err
		}
		st, err := fh.Stat()
		if err != nil {
			fh.Close()
			return fileErr("open", rel, err)
		}
		reply.Info = toInfo(st)
		if inline := min(req.Inline, agentrpc.MaxInline); st.Size() <= int64(inline) {
			defer fh.Close()
			buf := getChunk(int(st.Size()))
			n, err := io.ReadFull(fh, buf)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				putChunk(buf)
				return fileErr("read", rel, err)
			}
			reply.Inline, reply.Data = true, buf[:n]
			reply.Info.Size = int64(n) // it shrank meanwhile: what was read is the file
			return nil
		}
		if !req.FD || !f.c.fds {
			fh.Close()
			return nil
		}
		// The rule of descriptor passing: only a regular file, opened
		// read-only, leaves the agent for a read; never a directory, an
		// O_PATH descriptor or a writable one. openRead guarantees all
		// three; the codec closes the agent's copy once it is sent.
		reply.File = fh
		return nil
	})
}

// inlineFast reads a regular file of at most inline bytes whole, with
// openat2 and no *os.File (the common small-file GET). ok is false when
// openRead must decide: any error, another type, or a bigger file.
func inlineFast(dirfd int, rel string, inline int) (agentrpc.FileInfo, []byte, bool) {
	fd, err := openat2Read(dirfd, rel)
	if err != nil {
		return agentrpc.FileInfo{}, nil, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > int64(min(inline, agentrpc.MaxInline)) {
		return agentrpc.FileInfo{}, nil, false
	}
	buf := getChunk(int(st.Size))
	got := 0
	for got < len(buf) {
		m, err := unix.Pread(fd, buf[got:], int64(got))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			putChunk(buf)
			return agentrpc.FileInfo{}, nil, false
		}
		if m == 0 {
			break // the file shrank: what was read is the file
		}
		got += m
	}
	return statInfo(rel, &st, int64(got)), buf[:got], true
}

// errIsDir reports that openRead found a directory.
var errIsDir = errors.New("is a directory")

// openRead opens rel (cleaned) read-only, confined to the workspace r
// (whose directory is dirfd, for openat2), and
// returns it only if it is a regular file: errIsDir for a directory,
// ErrInvalid for anything else (a FIFO, device or socket is refused
// without blocking: O_NONBLOCK, cleared again for a regular file).
func openRead(r *os.Root, dirfd int, rel string) (*os.File, error) {
	fd, err := openat2Read(dirfd, rel)
	var fh *os.File
	if err == nil {
		fh = os.NewFile(uintptr(fd), rel)
	} else {
		fh, err = r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
		if err != nil {
			return nil, fileErr("open", rel, err)
		}
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fileErr("open", rel, err)
	}
	switch {
	case st.IsDir():
		fh.Close()
		return nil, errIsDir
	case !st.Mode().IsRegular():
		fh.Close()
		return nil, errorf(agentrpc.CodeInvalid, "open %s: not a regular file (a FIFO, device or socket cannot be read through the API)", rel)
	}
	if sc, err := fh.SyscallConn(); err == nil {
		sc.Control(func(fd uintptr) { unix.SetNonblock(int(fd), false) })
	}
	return fh, nil
}
