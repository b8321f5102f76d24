package session

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// Handover is the state of the running sessions, paused for the next agent
// image: their records, how many output bytes each has saved, and which of
// Files is each one's output and input. It is plain data (JSON) apart from
// Files, which cross exec as descriptors.
type Handover struct {
	Sessions []HandedSession
	// Leftovers are the group members finished sessions left behind, so
	// that Stop still ends them after the hand-over.
	Leftovers map[string]map[int]uint64
	Files     []*os.File `json:"-"`
}

// HandedSession is one running session in a Handover.
type HandedSession struct {
	Record     record
	OutputSize int64 // bytes in the output file; the rest is in the pipe or pty
	Output     int   // index in Files: the read end of the output pipe, or the pty master
	Input      int   // index in Files: the write end of stdin; -1 when closed (tty: = Output)
}

// ErrFrozen is returned by Freeze when a hand-over is already under way.
var ErrFrozen = errors.New("sessions already frozen for a hand-over")

// Freeze pauses every running session for a hand-over and returns their
// state: new starts fail with code limit, sessions whose process is
// exiting finish their end first (at most drainWait), every output copier
// stops at a byte boundary (the unread bytes stay in the kernel for the
// next image), and sessions whose leader exits from now on are left for the
// next image. The processes run on. Thaw undoes it; Finish ends the Manager
// once the next image owns the sessions. No call may be in progress.
func (m *Manager) Freeze() (*Handover, error) {
	m.mu.Lock()
	if m.frozen || m.closed {
		m.mu.Unlock()
		return nil, ErrFrozen
	}
	m.frozen = true
	m.thawed = make(chan struct{})
	m.mu.Unlock()
	for deadline := time.Now().Add(drainWait + 5*time.Second); ; time.Sleep(2 * time.Millisecond) {
		m.mu.Lock()
		n := m.ending
		m.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			m.Thaw()
			return nil, fmt.Errorf("freeze sessions: %d sessions did not finish ending", n)
		}
	}
	m.mu.Lock()
	all := append([]*Session(nil), m.order...)
	m.mu.Unlock()
	h := &Handover{Leftovers: map[string]map[int]uint64{}}
	for _, ses := range all {
		if !ses.isRunning() {
			ses.reapMu.Lock()
			if ses.reaped && len(ses.leftovers) > 0 {
				h.Leftovers[ses.id] = maps(ses.leftovers)
			}
			ses.reapMu.Unlock()
			continue
		}
		if err := ses.pause(); err != nil {
			m.Thaw()
			return nil, fmt.Errorf("freeze session %s: %w", ses.id, err)
		}
		ses.mu.Lock()
		hs := HandedSession{Record: ses.rec, OutputSize: ses.out.Size(), Output: len(h.Files), Input: -1}
		ses.mu.Unlock()
		hs.Record.Argv = append([]string(nil), hs.Record.Argv...)
		h.Files = append(h.Files, ses.output)
		ses.inMu.Lock()
		switch {
		case ses.input == nil:
		case ses.pty != nil:
			hs.Input = hs.Output
		default:
			hs.Input = len(h.Files)
			h.Files = append(h.Files, ses.input)
		}
		ses.inMu.Unlock()
		h.Sessions = append(h.Sessions, hs)
	}
	return h, nil
}

func maps(m map[int]uint64) map[int]uint64 {
	c := make(map[int]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// pause stops the output copier without losing a byte: a read deadline in
// the past wakes its read, and what it read is saved before it returns.
func (ses *Session) pause() error {
	ses.mu.Lock()
	ses.paused = true
	ses.mu.Unlock()
	if err := ses.output.SetReadDeadline(time.Unix(1, 0)); err != nil {
		ses.mu.Lock()
		ses.paused = false // its copier still runs: Thaw must not start another
		ses.mu.Unlock()
		return fmt.Errorf("stop reading output: %w", err)
	}
	<-ses.copied
	return nil
}

// Thaw resumes the sessions after a hand-over that did not happen, and
// undoes Interrupt.
func (m *Manager) Thaw() {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.quit:
		m.quit = make(chan struct{}) // Interrupt was for the hand-over
	default:
	}
	m.handing = false
	if !m.frozen {
		return
	}
	for _, ses := range m.order {
		ses.mu.Lock()
		wasPaused := ses.paused
		ses.paused = false
		ses.mu.Unlock()
		if wasPaused {
			ses.output.SetReadDeadline(time.Time{})
			ses.copied = make(chan struct{})
			go ses.copyOutput()
		}
	}
	m.frozen = false
	close(m.thawed)
}

// Finish ends a frozen Manager whose sessions the next image has adopted
// in this process (a test; after exec nothing is left to end): its
// goroutines return, and it closes its copies of the handed descriptors.
func (m *Manager) Finish(h *Handover) {
	m.mu.Lock()
	if !m.frozen || m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.thawed) // parked goroutines see closed and return
	m.mu.Unlock()
	for _, f := range h.Files {
		f.Close()
	}
}

// beginEnd is called by a session's wait once its leader has exited. While
// the sessions are frozen it waits; it returns false when the sessions were
// handed over (the next image ends the session).
func (m *Manager) beginEnd() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.frozen {
		if m.closed {
			return false
		}
		ch := m.thawed
		m.mu.Unlock()
		<-ch
		m.mu.Lock()
	}
	m.ending++
	return true
}

func (m *Manager) endDone() {
	m.mu.Lock()
	m.ending--
	m.mu.Unlock()
}

// Adopt returns a Manager for cfg that takes over the sessions of h, handed
// over by the image before this one (files are its descriptors, in the
// order of h.Files). Their processes must be this process's children.
// Records on disk of sessions not in h load as New loads them.
func Adopt(cfg Config, h *Handover, files []*os.File) (*Manager, error) {
	adopt := map[string]*Session{}
	for _, hs := range h.Sessions {
		rec := hs.Record
		if !validID(rec.ID) || rec.State != agentrpc.StateRunning || rec.PID <= 0 ||
			hs.Output < 0 || hs.Output >= len(files) || hs.Input >= len(files) {
			return nil, fmt.Errorf("adopt sessions: session %q is not a valid running session", rec.ID)
		}
		ses := newSession(nil, rec)
		ses.pgid = rec.PID
		ses.output = files[hs.Output]
		if hs.Input >= 0 {
			ses.input = files[hs.Input]
		}
		if rec.TTY {
			ses.pty = ses.output
		}
		adopt[rec.ID] = ses
	}
	m, err := newManager(cfg, adopt)
	if err != nil {
		return nil, err
	}
	for _, hs := range h.Sessions {
		ses := adopt[hs.Record.ID]
		if ses.out, err = reopenOutput(m.outputPath(ses.id), ses.rec.OutputCap, hs.OutputSize); err != nil {
			return nil, fmt.Errorf("adopt session %s: %w", ses.id, err)
		}
	}
	for id, left := range h.Leftovers {
		if ses := m.byID[id]; ses != nil && !ses.isRunning() {
			ses.pgid, ses.reaped, ses.leftovers = ses.rec.PID, true, maps(left)
		}
	}
	m.nrunning = len(adopt)
	for _, hs := range h.Sessions {
		m.cfg.Busy()
		adopt[hs.Record.ID].run()
	}
	return m, nil
}

// ClearCloexec lets f's descriptor cross exec.
func ClearCloexec(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		_, ferr = unix.FcntlInt(fd, unix.F_SETFD, 0)
	})
	if err != nil {
		return err
	}
	return ferr
}
