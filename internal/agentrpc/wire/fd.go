package wire

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Descriptor passing. On a Unix socket an agent may send an open file with
// a reply (SCM_RIGHTS): the frame of such a reply is of kind 'f' and is
// written with one sendmsg carrying the descriptor, so that the descriptor
// arrives with the frame's first bytes, before the frame is complete. The
// client's reader collects received descriptors in order and each 'f'
// frame takes the oldest. Descriptors nobody claims are closed, and an
// agent that sends more than a few unclaimed is refused.

// maxQueuedFDs bounds descriptors received ahead of the frames claiming them.
const maxQueuedFDs = 16

// fdReader reads a Unix connection, collecting the descriptors that arrive
// with the bytes.
type fdReader struct {
	uc  *net.UnixConn
	oob []byte
	fds []int // received, not yet claimed, oldest first
	err error // sticky: the descriptor stream is out of step
}

func newFDReader(uc *net.UnixConn) *fdReader {
	return &fdReader{uc: uc, oob: make([]byte, syscall.CmsgSpace(4*maxQueuedFDs))}
}

// errFDs reports a descriptor stream the reader cannot trust any more.
var errFDs = errors.New("descriptors out of step with replies")

func (r *fdReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	// net.UnixConn asks for MSG_CMSG_CLOEXEC on Linux: a received
	// descriptor never leaks into a child process.
	n, oobn, flags, _, err := r.uc.ReadMsgUnix(p, r.oob)
	n, oobn = max(n, 0), max(oobn, 0)
	if oobn > 0 {
		if perr := r.collect(r.oob[:oobn]); perr != nil {
			r.err = perr
			return 0, perr
		}
	}
	if flags&syscall.MSG_CTRUNC != 0 {
		r.err = fmt.Errorf("%w: more than %d descriptors at once", errFDs, maxQueuedFDs)
		return 0, r.err
	}
	return n, err
}

// collect queues the descriptors of control messages b.
func (r *fdReader) collect(b []byte) error {
	msgs, err := syscall.ParseSocketControlMessage(b)
	if err != nil {
		return fmt.Errorf("%w: %w", errFDs, err)
	}
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue // not SCM_RIGHTS (credentials are not asked for)
		}
		r.fds = append(r.fds, fds...)
	}
	if len(r.fds) > maxQueuedFDs {
		return fmt.Errorf("%w: %d descriptors not claimed by any reply", errFDs, len(r.fds))
	}
	return nil
}

// take returns the oldest received descriptor.
func (r *fdReader) take() (*os.File, error) {
	if len(r.fds) == 0 {
		return nil, fmt.Errorf("%w: a reply claims a descriptor that did not arrive", errFDs)
	}
	fd := r.fds[0]
	r.fds = r.fds[1:]
	return os.NewFile(uintptr(fd), "agent-passed"), nil
}

// close closes the descriptors nobody claimed.
func (r *fdReader) close() {
	for _, fd := range r.fds {
		syscall.Close(fd)
	}
	r.fds = nil
}

// sendFD writes b with f's descriptor attached, in one sendmsg (the rest, if
// the kernel took only part, by plain writes).
func sendFD(uc *net.UnixConn, b []byte, f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var n int
	var werr error
	err = sc.Control(func(fd uintptr) {
		n, _, werr = uc.WriteMsgUnix(b, syscall.UnixRights(int(fd)), nil)
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	if n < len(b) {
		_, err = uc.Write(b[n:])
	}
	return err
}
