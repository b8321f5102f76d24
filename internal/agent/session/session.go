package session

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// Session is one process the user runs, and its record. rec is written
// under mu while the session runs (wait records its end), so code that does
// not hold mu uses id, and reads the rest of rec with Snapshot.
type Session struct {
	m   *Manager
	id  string // rec.ID, never changed: read it without mu
	out *outputFile

	mu      sync.Mutex
	rec     record
	changed chan struct{} // closed (and replaced) when output arrives or the session ends
	ended   chan struct{} // closed when the session has ended

	pgid   int
	input  *os.File // write end of stdin, or the pty master; nil once closed
	pty    *os.File // pty master, for tty sessions
	inMu   sync.Mutex
	output *os.File // read end of the output pipe, or the pty master

	// copied is closed when copyOutput returns; paused tells why: the
	// hand-over stopped it, not the end of the output.
	copied chan struct{}
	paused bool

	// reapMu orders signals to the group before the leader's reap; see
	// group_linux.go.
	reapMu    sync.Mutex
	reaped    bool
	leftovers map[int]uint64 // group members left at the reap: pid → start time
}

func newSession(m *Manager, rec record) *Session {
	return &Session{m: m, id: rec.ID, rec: rec, changed: make(chan struct{}), ended: make(chan struct{})}
}

// ID returns the session's id.
func (ses *Session) ID() string { return ses.id }

// Snapshot returns a copy of the record, with the current output size.
func (ses *Session) Snapshot() agentrpc.Session {
	ses.mu.Lock()
	rec := ses.rec.Session
	ses.mu.Unlock()
	rec.Argv = append([]string(nil), rec.Argv...)
	rec.OutputSize = ses.out.Size()
	return rec
}

func (ses *Session) isRunning() bool {
	ses.mu.Lock()
	defer ses.mu.Unlock()
	return ses.rec.State == agentrpc.StateRunning
}

func (ses *Session) hasEnded() bool {
	select {
	case <-ses.ended:
		return true
	default:
		return false
	}
}

// notifyLocked wakes long polls. ses.mu must be held.
func (ses *Session) notifyLocked() {
	close(ses.changed)
	ses.changed = make(chan struct{})
}

func (ses *Session) notRunning() error {
	return errorf(agentrpc.CodeNotRunning, "session %s is not running", ses.id)
}

// Signal sends a signal, by name or number, to the session's process group.
func (ses *Session) Signal(name string) error {
	sig, err := parseSignal(name)
	if err != nil {
		return err
	}
	if !ses.isRunning() {
		return ses.notRunning()
	}
	return ses.kill(sig)
}

// Resize changes a tty session's terminal size.
func (ses *Session) Resize(rows, cols uint16) error {
	switch {
	case !ses.isRunning():
		return ses.notRunning()
	case ses.pty == nil:
		return errorf(agentrpc.CodeInvalid, "session %s has no tty; start it with tty to resize it", ses.id)
	case rows == 0 || cols == 0:
		return errorf(agentrpc.CodeInvalid, "resize: rows and cols must be positive")
	}
	err := rawControl(ses.pty, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err != nil {
		return errorf(agentrpc.CodeInvalid, "resize session %s: %v", ses.id, err)
	}
	return nil
}

// WriteInput writes to the session's standard input.
func (ses *Session) WriteInput(data []byte) error {
	if len(data) > agentrpc.MaxInputSize {
		return errorf(agentrpc.CodeTooLarge, "input of %d bytes is over the %d byte limit per call", len(data), agentrpc.MaxInputSize)
	}
	ses.inMu.Lock()
	defer ses.inMu.Unlock()
	if ses.input == nil {
		if !ses.isRunning() {
			return ses.notRunning()
		}
		return errorf(agentrpc.CodeInvalid, "session %s has closed its input", ses.id)
	}
	ses.input.SetWriteDeadline(time.Now().Add(ses.m.cfg.InputTimeout))
	_, err := ses.input.Write(data)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(agentrpc.CodeLimit, "session %s did not read its input within %v; try again later", ses.id, ses.m.cfg.InputTimeout)
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.EIO), errors.Is(err, os.ErrClosed):
		return errorf(agentrpc.CodeNotRunning, "session %s no longer reads its input", ses.id)
	}
	return errorf(agentrpc.CodeInternal, "write input of session %s: %v", ses.id, bare(err))
}

// CloseInput closes the session's standard input; on a tty it sends the
// end-of-file character instead.
func (ses *Session) CloseInput() error {
	if ses.pty != nil {
		return ses.WriteInput([]byte{4}) // ^D, VEOF in cooked mode
	}
	ses.inMu.Lock()
	defer ses.inMu.Unlock()
	if ses.input != nil {
		ses.input.Close()
		ses.input = nil
	}
	return nil
}

// stop terminates the process group: SIGTERM, then SIGKILL once grace has
// passed with any member left; it returns when the session has ended (its
// slot free) and its group is gone, or when quit is closed.
func (ses *Session) stop(grace time.Duration, quit <-chan struct{}) {
	ses.kill(unix.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for ses.groupAlive() {
		select {
		case <-quit:
			return
		case <-t.C:
			ses.kill(unix.SIGKILL)
			select {
			case <-ses.ended:
			case <-quit:
			case <-time.After(drainWait + 5*time.Second):
			}
			return
		case <-tick.C:
		}
	}
}

// Read reads the session's output from an offset, waiting for more if
// asked (until output arrives, the session ends, the wait passes or the
// agent goes away).
func (ses *Session) Read(req *agentrpc.OutputRequest) (agentrpc.Output, error) {
	max := req.Max
	switch {
	case req.Offset < 0 || max < 0 || req.Wait < 0:
		return agentrpc.Output{}, errorf(agentrpc.CodeInvalid, "read output: negative offset, max or wait")
	case max == 0:
		max = agentrpc.MaxReadChunk
	case max > agentrpc.MaxReadChunk:
		return agentrpc.Output{}, errorf(agentrpc.CodeTooLarge, "read output: max %d is over the %d byte chunk limit", max, agentrpc.MaxReadChunk)
	}
	if req.Wait > 0 {
		ses.waitOutput(req.Offset, min(req.Wait, agentrpc.MaxWait), ses.m.quitCh())
	}
	ended := ses.hasEnded() // before reading: output is complete once ended
	data, from, start, size, err := ses.out.ReadAt(req.Offset, max, ses.m.cfg.Buffer)
	if errors.Is(err, errRemoved) {
		return agentrpc.Output{}, errorf(agentrpc.CodeNotFound, "session %q not found (removed)", ses.id)
	}
	if errors.Is(err, errOffsetPastEnd) {
		return agentrpc.Output{}, errorf(agentrpc.CodeInvalid, "read output: offset %d is past the end of the output (%d bytes)", req.Offset, size)
	}
	if err != nil {
		return agentrpc.Output{}, errorf(agentrpc.CodeInternal, "read output of session %s: %v", ses.id, bare(err))
	}
	next := from + int64(len(data))
	return agentrpc.Output{Data: data, Offset: from, Next: next, Start: start, Size: size, Done: ended && next == size}, nil
}

// waitOutput blocks until output past off exists, the session ends, wait
// passes or quit is closed.
func (ses *Session) waitOutput(off int64, wait time.Duration, quit <-chan struct{}) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		ses.mu.Lock()
		ch := ses.changed
		ses.mu.Unlock()
		if ses.out.Size() > off || ses.hasEnded() {
			return
		}
		select {
		case <-ch:
		case <-t.C:
			return
		case <-quit:
			return
		}
	}
}
