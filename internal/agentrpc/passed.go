package agentrpc

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// checkPassed vets a descriptor an agent passed, as any reply is vetted: an
// agent the user controls could pass anything the user may open. It must
// have been asked for, be of a regular file (never a FIFO, socket, device
// or directory, which could hang or mislead a transfer), and be open for
// the transfer's direction. A refused descriptor is closed, and the error
// matches ErrBadReply.
func checkPassed(f *os.File, asked, write bool) error {
	if f == nil {
		return nil
	}
	err := vetPassed(f, asked, write)
	if err != nil {
		f.Close()
	}
	return err
}

func vetPassed(f *os.File, asked, write bool) error {
	if !asked {
		return &passedError{"the agent passed a descriptor that was not asked for"}
	}
	st, err := f.Stat()
	if err != nil {
		return &passedError{"stat the agent's descriptor: " + err.Error()}
	}
	if !st.Mode().IsRegular() {
		return &passedError{fmt.Sprintf("the agent passed a descriptor of a %v, not a regular file", st.Mode().Type())}
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return &passedError{"flags of the agent's descriptor: " + err.Error()}
	}
	mode := fl & unix.O_ACCMODE
	if write && mode == unix.O_RDONLY || !write && mode == unix.O_WRONLY {
		return &passedError{fmt.Sprintf("the agent passed a descriptor open with flags %#o, not for this transfer", fl)}
	}
	return nil
}

type passedError struct{ msg string }

func (e *passedError) Error() string        { return "bad agent reply: " + e.msg }
func (e *passedError) Is(target error) bool { return target == ErrBadReply }
