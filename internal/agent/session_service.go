package agent

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// inputTimeout bounds how long WriteInput waits for a session to take its
// input. A variable for tests.
var inputTimeout = 5 * time.Second

// SessionService is the Session net/rpc service: the user's processes.
type SessionService struct{ c *call }

func (ss *SessionService) lookup(id string) (*session, error) {
	if !validID(id) {
		return nil, errorf(agentrpc.CodeNotFound, "session %q not found", id)
	}
	return ss.c.s.sess.get(id)
}

// Start starts a session.
func (ss *SessionService) Start(req *agentrpc.StartRequest, reply *agentrpc.Session) error {
	return ss.c.do(func() error {
		rec, err := ss.c.s.sess.start(req, ss.c.cred)
		if err != nil {
			return err
		}
		*reply = rec
		return nil
	})
}

// List lists every session, oldest first.
func (ss *SessionService) List(_ *agentrpc.Empty, reply *agentrpc.SessionList) error {
	return ss.c.do(func() error {
		reply.Sessions = ss.c.s.sess.list()
		return nil
	})
}

// Get returns one session's record.
func (ss *SessionService) Get(req *agentrpc.SessionRef, reply *agentrpc.Session) error {
	return ss.c.do(func() error {
		ses, err := ss.lookup(req.ID)
		if err != nil {
			return err
		}
		*reply = ses.snapshot()
		return nil
	})
}

// Stop sends SIGTERM to the session's process group, SIGKILL after the
// grace period, and returns the record once the session and every process
// left in its group have ended.
func (ss *SessionService) Stop(req *agentrpc.StopRequest, reply *agentrpc.Session) error {
	return ss.c.do(func() error {
		ses, err := ss.lookup(req.ID)
		if err != nil {
			return err
		}
		grace := req.Grace
		switch {
		case grace < 0 || grace > agentrpc.MaxWait:
			return errorf(agentrpc.CodeInvalid, "stop: grace %v is outside 0-%v", grace, agentrpc.MaxWait)
		case grace == 0:
			grace = agentrpc.DefaultGrace
		}
		// An ended session may have left children in its process group
		// (e.g. "cmd &"): Stop ends them too.
		if ses.groupAlive() {
			ss.c.s.log.Info("session stopping", "session", req.ID, "caller_uid", ss.c.cred.UID)
			ses.stop(grace)
		}
		*reply = ses.snapshot()
		return nil
	})
}

// stop terminates the process group: SIGTERM, then SIGKILL once grace has
// passed with any member left; it returns when the leader has been reaped.
//
// If the agent starts shutting down meanwhile, stop returns at once: the
// shutdown stops every session within its own, shorter grace.
func (ses *session) stop(grace time.Duration) {
	quit := ses.m.s.quit
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

// Signal sends a signal to the session's process group.
func (ss *SessionService) Signal(req *agentrpc.SignalRequest, _ *agentrpc.Empty) error {
	return ss.c.do(func() error {
		ses, err := ss.lookup(req.ID)
		if err != nil {
			return err
		}
		sig, err := parseSignal(req.Signal)
		if err != nil {
			return err
		}
		if !ses.isRunning() {
			return errorf(agentrpc.CodeInvalid, "session %s is not running", req.ID)
		}
		return ses.kill(sig)
	})
}

// Resize changes a tty session's terminal size.
func (ss *SessionService) Resize(req *agentrpc.ResizeRequest, _ *agentrpc.Empty) error {
	return ss.c.do(func() error {
		ses, err := ss.lookup(req.ID)
		if err != nil {
			return err
		}
		switch {
		case !ses.isRunning():
			return errorf(agentrpc.CodeInvalid, "session %s is not running", req.ID)
		case ses.pty == nil:
			return errorf(agentrpc.CodeInvalid, "session %s has no tty; start it with tty to resize it", req.ID)
		case req.Rows == 0 || req.Cols == 0:
			return errorf(agentrpc.CodeInvalid, "resize: rows and cols must be positive")
		}
		err = rawControl(ses.pty, func(fd int) error {
			return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: req.Rows, Col: req.Cols})
		})
		if err != nil {
			return errorf(agentrpc.CodeInvalid, "resize session %s: %v", req.ID, err)
		}
		return nil
	})
}

// WriteInput writes to the session's standard input.
func (ss *SessionService) WriteInput(req *agentrpc.InputRequest, _ *agentrpc.Empty) error {
	return ss.c.do(func() error {
		ses, err := ss.lookup(req.ID)
		if err != nil {
			return err
		}
		if len(req.Data) > agentrpc.MaxInputSize {
			return errorf(agentrpc.CodeTooLarge, "input of %d bytes is over the %d byte limit per call", len(req.Data), agentrpc.MaxInputSize)
		}
		return ses.writeInput(req.Data)
	})
}

func (ses *session) writeInput(data []byte) error {
	ses.inMu.Lock()
	defer ses.inMu.Unlock()
	if ses.input == nil {
		return errorf(agentrpc.CodeInvalid, "session %s is not running or its input is closed", ses.id)
	}
	ses.input.SetWriteDeadline(time.Now().Add(inputTimeout))
	_, err := ses.input.Write(data)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(agentrpc.CodeLimit, "session %s did not read its input within %v; try again later", ses.id, inputTimeout)
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.EIO), errors.Is(err, os.ErrClosed):
		return errorf(agentrpc.CodeInvalid, "session %s no longer reads its input", ses.id)
	}
	return errorf(agentrpc.CodeInternal, "write input of session %s: %v", ses.id, bare(err))
}

// CloseInput closes the session's standard input; on a tty it sends the
// end-of-file character instead.
func (ss *SessionService) CloseInput(req *agentrpc.SessionRef, _ *agentrpc.Empty) error {
	return ss.c.do(func() error {
		ses, err := ss.lookup(req.ID)
		if err != nil {
			return err
		}
		if ses.pty != nil {
			return ses.writeInput([]byte{4}) // ^D, VEOF in cooked mode
		}
		ses.inMu.Lock()
		defer ses.inMu.Unlock()
		if ses.input != nil {
			ses.input.Close()
			ses.input = nil
		}
		return nil
	})
}

// ReadOutput reads the session's output from an offset, waiting for more
// if asked.
func (ss *SessionService) ReadOutput(req *agentrpc.OutputRequest, reply *agentrpc.Output) error {
	return ss.c.do(func() error {
		ses, err := ss.lookup(req.ID)
		if err != nil {
			return err
		}
		out, err := ses.read(req, ss.c.s.quit)
		if err != nil {
			return err
		}
		*reply = out
		return nil
	})
}

func (ses *session) read(req *agentrpc.OutputRequest, quit <-chan struct{}) (agentrpc.Output, error) {
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
		ses.waitOutput(req.Offset, min(req.Wait, agentrpc.MaxWait), quit)
	}
	ended := ses.hasEnded() // before reading: output is complete once ended
	data, from, start, size, err := ses.out.ReadAt(req.Offset, max)
	if errors.Is(err, errOffsetPastEnd) {
		return agentrpc.Output{}, errorf(agentrpc.CodeInvalid, "read output: offset %d is past the end of the output (%d bytes)", req.Offset, size)
	}
	if err != nil {
		return agentrpc.Output{}, errorf(agentrpc.CodeInternal, "read output of session %s: %v", ses.id, bare(err))
	}
	next := from + int64(len(data))
	return agentrpc.Output{Data: data, Offset: from, Next: next, Start: start, Size: size, Done: ended && next == size}, nil
}

func (ses *session) hasEnded() bool {
	select {
	case <-ses.ended:
		return true
	default:
		return false
	}
}

// waitOutput blocks until output past off exists, the session ends, wait
// passes or the agent shuts down.
func (ses *session) waitOutput(off int64, wait time.Duration, quit <-chan struct{}) {
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

// shutdown stops every running session (SIGTERM, SIGKILL after grace) and
// waits for their records to be saved.
func (m *sessions) shutdown(grace time.Duration) {
	m.mu.Lock()
	m.closed = true
	var run []*session
	for _, ses := range m.order {
		if ses.isRunning() {
			run = append(run, ses)
		}
	}
	m.mu.Unlock()
	for _, ses := range run {
		ses.kill(unix.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		deadline := time.Now().Add(grace)
		for _, ses := range run {
			for time.Now().Before(deadline) && ses.groupAlive() {
				time.Sleep(10 * time.Millisecond)
			}
		}
		for _, ses := range run {
			if ses.groupAlive() {
				ses.kill(unix.SIGKILL)
			}
		}
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace + drainWait + 5*time.Second):
		m.s.log.Warn("sessions did not end in time; their records say running and will read lost")
	}
}
