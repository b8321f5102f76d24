package session

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// run starts the goroutines of a running session: one copies its output
// into the output file, one waits for its end.
func (ses *Session) run() {
	ses.copied = make(chan struct{})
	ses.m.wg.Add(1)
	go ses.copyOutput()
	go ses.wait()
}

// copyOutput reads the process's output into the output file until EOF,
// until the read end is closed, or until the hand-over pauses it (a read
// deadline in the past: the bytes not read stay in the pipe or pty for the
// next agent).
func (ses *Session) copyOutput() {
	defer close(ses.copied)
	buf := make([]byte, 32<<10)
	failing := false
	for {
		n, err := ses.output.Read(buf)
		if n > 0 {
			// On a write error (a full disk) keep reading, or the process
			// would block on its output; the bytes are lost.
			if _, werr := ses.out.Write(buf[:n]); werr != nil && !failing {
				failing = true
				ses.m.log.Warn("session output not saved", "session", ses.id, "err", werr)
			}
			ses.mu.Lock()
			ses.notifyLocked()
			ses.mu.Unlock()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && ses.pausedNow() {
			return
		}
		if err != nil {
			return // io.EOF, EIO from a pty whose terminal closed, or closed by wait
		}
	}
}

func (ses *Session) pausedNow() bool {
	ses.mu.Lock()
	defer ses.mu.Unlock()
	return ses.paused
}

// wait waits for the leader to exit, reaps it, finishes reading its output
// and records the end.
func (ses *Session) wait() {
	defer ses.m.wg.Done()
	// The leader's exit status is known before the reap; the group's
	// leftovers are recorded and the leader reaped meanwhile.
	ws, ok := ses.waitLeader()
	if !ses.m.beginEnd() {
		return // handed over: the next agent waits for this session
	}
	defer ses.m.endDone()
	reaped := make(chan error, 1)
	go func() {
		ses.recordLeftovers()
		reaped <- ses.reap()
	}()
	var err error
	if !ok {
		err = <-reaped
	} else if !ws.Exited() || ws.ExitStatus() != 0 {
		err = waitStatusError(ws)
	}
	defer func() { <-reaped }() // before wg.Done: shutdown waits for the reap
	select {
	case <-ses.copied:
	case <-time.After(drainWait):
		ses.output.Close() // children still hold the output open; stop reading
		<-ses.copied
	}
	ses.output.Close()
	ses.out.Close()
	ses.inMu.Lock()
	if ses.input != nil {
		ses.input.Close()
		ses.input = nil
	}
	ses.inMu.Unlock()

	// Save the end before anyone can see it, so that a caller that saw the
	// session end sees the same after an agent restart. The rename makes it
	// survive the agent; the sync after publishing, the machine.
	ses.mu.Lock()
	saved := ses.rec
	ses.mu.Unlock()
	saved.EndTime = time.Now()
	saved.State = agentrpc.StateExited
	saved.OutputSize = ses.out.Size()
	setExit(&saved, err)
	if err := ses.m.save(saved, false); err != nil {
		ses.m.log.Warn("session record not saved", "session", saved.ID, "err", err)
	}
	// The slot is free before the end shows: whoever saw the session end
	// (Stop returning) can start another at once.
	ses.m.release()
	ses.mu.Lock()
	ses.rec = saved
	ses.notifyLocked()
	close(ses.ended)
	ses.mu.Unlock()
	ses.m.syncRecord(saved.ID)
	ses.m.log.Info("session exited", "session", saved.ID, "pid", saved.PID, "code", exitText(saved.Session))
	ses.m.mu.Lock()
	ses.m.prune()
	ses.m.mu.Unlock()
}

// reap collects the leader's exit status, retrying on EINTR.
func (ses *Session) reap() error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(ses.pgid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for process %d: %w", ses.pgid, err)
		}
		if ws.Exited() && ws.ExitStatus() == 0 {
			return nil
		}
		return waitStatusError(syscall.WaitStatus(ws))
	}
}

// waitStatusError is an error with a Sys() WaitStatus, as exec.Cmd.Wait returns.
type waitStatusError syscall.WaitStatus

func (e waitStatusError) Error() string { return "exit status" }
func (e waitStatusError) Sys() any      { return syscall.WaitStatus(e) }

// setExit fills the exit code or signal from the wait's error.
func setExit(rec *record, err error) {
	var ee interface{ Sys() any }
	if err != nil && !errors.As(err, &ee) {
		rec.Error = err.Error()
	}
	var ws syscall.WaitStatus
	if errors.As(err, &ee) {
		ws, _ = ee.Sys().(syscall.WaitStatus)
	}
	switch {
	case ws.Signaled():
		rec.Signal = signalName(ws.Signal())
	default:
		rec.ExitCode = ws.ExitStatus()
	}
}

func exitText(s agentrpc.Session) string {
	if s.Signal != "" {
		return "signal " + s.Signal
	}
	if s.State == agentrpc.StateExited {
		return fmt.Sprint(s.ExitCode)
	}
	return "unknown"
}
