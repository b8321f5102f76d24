package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"octo/internal/agentrpc"
)

// drainWait is how long a session's output is still read after its process
// exited, for bytes in flight and children that still hold the output open.
const drainWait = 500 * time.Millisecond

// sessions holds every session the agent knows, running or finished.
type sessions struct {
	s   *Server
	dir string

	mu       sync.Mutex
	byID     map[string]*session
	order    []*session // oldest first
	nrunning int
	closed   bool
	wg       sync.WaitGroup // session goroutines
}

// session is one process the user runs, and its record. rec is written
// under mu while the session runs (wait records its end), so code that does
// not hold mu uses id, and reads the rest of rec with snapshot.
type session struct {
	m   *sessions
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

	// reapMu orders signals to the group before the leader's reap; see
	// group_linux.go.
	reapMu    sync.Mutex
	reaped    bool
	leftovers map[int]uint64 // group members left at the reap: pid → start time
}

func loadSessions(s *Server) (*sessions, error) {
	m := &sessions{s: s, dir: filepath.Join(s.cfg.StateDir, "sessions"), byID: map[string]*session{}}
	if err := makeOwnDir(m.dir, uint32(os.Geteuid())); err != nil {
		return nil, err
	}
	loaded, err := m.loadRecords()
	if err != nil {
		return nil, err
	}
	for _, ses := range loaded {
		m.byID[ses.id] = ses
	}
	m.order = loaded
	m.prune()
	return m, nil
}

// running returns the number of running sessions.
func (m *sessions) running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nrunning
}

// get returns the session id, or ErrNotFound.
func (m *sessions) get(id string) (*session, error) {
	m.mu.Lock()
	ses := m.byID[id]
	m.mu.Unlock()
	if ses == nil {
		return nil, errorf(agentrpc.CodeNotFound, "session %q not found", id)
	}
	return ses, nil
}

// list returns every record, oldest first.
func (m *sessions) list() []agentrpc.Session {
	m.mu.Lock()
	all := append([]*session(nil), m.order...)
	m.mu.Unlock()
	out := make([]agentrpc.Session, len(all))
	for i, ses := range all {
		out[i] = ses.snapshot()
	}
	return out
}

// reserve takes a running-session slot, or fails with ErrLimit.
func (m *sessions) reserve() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errorf(agentrpc.CodeLimit, "the agent is shutting down; try again")
	}
	if m.nrunning >= m.s.cfg.MaxSessions {
		return errorf(agentrpc.CodeLimit, "%d sessions are running, the most this agent allows; stop one first", m.nrunning)
	}
	m.nrunning++
	m.s.idle.inc()
	return nil
}

// release gives a slot back.
func (m *sessions) release() {
	m.mu.Lock()
	m.nrunning--
	m.mu.Unlock()
	m.s.idle.dec()
}

// add makes ses known. It is running when add is called after reserve.
func (m *sessions) add(ses *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byID[ses.id] = ses
	m.order = append(m.order, ses)
	m.prune()
}

// snapshot returns a copy of the record, with the current output size.
func (ses *session) snapshot() agentrpc.Session {
	ses.mu.Lock()
	rec := ses.rec.Session
	ses.mu.Unlock()
	rec.Argv = append([]string(nil), rec.Argv...)
	rec.OutputSize = ses.out.Size()
	return rec
}

func (ses *session) isRunning() bool {
	ses.mu.Lock()
	defer ses.mu.Unlock()
	return ses.rec.State == agentrpc.StateRunning
}

// notify wakes long polls. ses.mu must be held.
func (ses *session) notify() {
	close(ses.changed)
	ses.changed = make(chan struct{})
}

// copyOutput reads the process's output into the output file until EOF or
// until the read end is closed.
func (ses *session) copyOutput(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 32<<10)
	failing := false
	for {
		n, err := ses.output.Read(buf)
		if n > 0 {
			// On a write error (a full disk) keep reading, or the process
			// would block on its output; the bytes are lost.
			if _, werr := ses.out.Write(buf[:n]); werr != nil && !failing {
				failing = true
				ses.m.s.log.Warn("session output not saved", "session", ses.id, "err", werr)
			}
			ses.mu.Lock()
			ses.notify()
			ses.mu.Unlock()
		}
		if err != nil {
			return // io.EOF, EIO from a pty whose terminal closed, or closed by wait
		}
	}
}

// wait reaps the process, finishes reading its output and records the end.
func (ses *session) wait(cmdWait func() error, copied <-chan struct{}) {
	defer ses.m.wg.Done()
	// The leader's exit status is known before the reap; the group's
	// leftovers are recorded and the leader reaped meanwhile.
	ws, ok := ses.waitLeader()
	reaped := make(chan error, 1)
	go func() {
		ses.recordLeftovers()
		reaped <- cmdWait()
	}()
	var err error
	if !ok {
		err = <-reaped
	} else if !ws.Exited() || ws.ExitStatus() != 0 {
		err = waitStatusError(ws)
	}
	defer func() { <-reaped }() // before wg.Done: shutdown waits for the reap
	select {
	case <-copied:
	case <-time.After(drainWait):
		ses.output.Close() // children still hold the output open; stop reading
		<-copied
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
		ses.m.s.log.Warn("session record not saved", "session", saved.ID, "err", err)
	}
	ses.mu.Lock()
	ses.rec = saved
	ses.notify()
	close(ses.ended)
	ses.mu.Unlock()
	ses.m.syncRecord(saved.ID)
	ses.m.s.log.Info("session exited", "session", saved.ID, "pid", saved.PID, "code", exitText(saved.Session))
	ses.m.release()
	ses.m.mu.Lock()
	ses.m.prune()
	ses.m.mu.Unlock()
}

// waitStatusError is an error with a Sys() WaitStatus, as cmd.Wait returns.
type waitStatusError syscall.WaitStatus

func (e waitStatusError) Error() string { return "exit status" }
func (e waitStatusError) Sys() any      { return syscall.WaitStatus(e) }

// setExit fills the exit code or signal from cmd.Wait's error.
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
