package session

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// drainWait is how long a session's output is still read after its process
// exited, for bytes in flight and children that still hold the output open.
const drainWait = 500 * time.Millisecond

// Config configures a Manager. The zero values of the limits are invalid:
// the agent fills its defaults in.
type Config struct {
	User, Home string // the user's name and home, for the environment
	Shell      string // SHELL of sessions
	Workspace  string // absolute path of the workspace, for PWD
	Dir        string // where records and output files live (created 0700)

	MaxSessions  int   // running sessions at once
	KeepSessions int   // finished sessions kept
	OutputCap    int64 // kept output bytes per session
	OutputBudget int64 // output bytes kept for all finished sessions

	// InputTimeout bounds how long WriteInput waits for a session to take
	// its input; 0 = 5s.
	InputTimeout time.Duration

	Logger *slog.Logger // nil = discard
	// Busy and Idle are called when a session starts and ends running (a
	// running session keeps the agent alive). Nil = nothing.
	Busy, Idle func()
	// Buffer returns a buffer of n bytes for the data of an output read;
	// the RPC layer recycles it once sent. Nil = make.
	Buffer func(n int) []byte
}

// Manager holds every session one agent knows, running or finished.
type Manager struct {
	cfg Config
	log *slog.Logger
	dir string

	mu       sync.Mutex
	byID     map[string]*Session
	order    []*Session // oldest first
	nrunning int
	closed   bool
	quit     chan struct{}  // closed by Interrupt: stops and long polls return
	handing  bool           // Interrupt was for a hand-over (see Stop)
	wg       sync.WaitGroup // session goroutines

	// handing over: see handover_linux.go.
	frozen bool
	ending int           // sessions between their leader's exit and their end record
	thawed chan struct{} // closed when a freeze ends without a hand-over
}

// New creates the state dir if needed, loads the records of earlier agents
// (those that say running become lost) and returns a Manager.
func New(cfg Config) (*Manager, error) {
	return newManager(cfg, nil)
}

func newManager(cfg Config, adopt map[string]*Session) (*Manager, error) {
	if cfg.MaxSessions <= 0 || cfg.KeepSessions <= 0 || cfg.OutputCap <= 0 || cfg.OutputBudget <= 0 {
		return nil, errors.New("session config: limits must be positive")
	}
	if !filepath.IsAbs(cfg.Dir) || !filepath.IsAbs(cfg.Workspace) {
		return nil, fmt.Errorf("session config: dir %q and workspace %q must be absolute", cfg.Dir, cfg.Workspace)
	}
	if cfg.Shell == "" {
		cfg.Shell = "/bin/sh"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.InputTimeout <= 0 {
		cfg.InputTimeout = 5 * time.Second
	}
	if cfg.Busy == nil {
		cfg.Busy = func() {}
	}
	if cfg.Idle == nil {
		cfg.Idle = func() {}
	}
	if cfg.Buffer == nil {
		cfg.Buffer = func(n int) []byte { return make([]byte, n) }
	}
	m := &Manager{cfg: cfg, log: log, dir: cfg.Dir, byID: map[string]*Session{}, quit: make(chan struct{})}
	if err := MakeOwnDir(m.dir, uint32(os.Geteuid())); err != nil {
		return nil, err
	}
	loaded, err := m.loadRecords(adopt)
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

// Running returns the number of running sessions.
func (m *Manager) Running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nrunning
}

// Get returns session id, or an error with code not_found.
func (m *Manager) Get(id string) (*Session, error) {
	m.mu.Lock()
	var ses *Session
	if validID(id) {
		ses = m.byID[id]
	}
	m.mu.Unlock()
	if ses == nil {
		return nil, errorf(agentrpc.CodeNotFound, "session %q not found", id)
	}
	return ses, nil
}

// List returns every record, oldest first.
func (m *Manager) List() []agentrpc.Session {
	m.mu.Lock()
	all := append([]*Session(nil), m.order...)
	m.mu.Unlock()
	out := make([]agentrpc.Session, len(all))
	for i, ses := range all {
		out[i] = ses.Snapshot()
	}
	return out
}

// Interrupt makes stops and long polls in progress return: the agent is
// going away (shutting down or, with handOver, handing over to its next
// image: a stop cut short then fails with code reloading, for the caller to
// repeat it with the next image).
func (m *Manager) Interrupt(handOver bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handing = handOver
	select {
	case <-m.quit:
	default:
		close(m.quit)
	}
}

// quitCh returns the channel Interrupt closes.
func (m *Manager) quitCh() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.quit
}

// reserve takes a running-session slot, or fails with code limit.
func (m *Manager) reserve() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.frozen {
		return errorf(agentrpc.CodeLimit, "the agent is shutting down or being upgraded; try again")
	}
	if m.nrunning >= m.cfg.MaxSessions {
		return errorf(agentrpc.CodeLimit, "%d sessions are running, the most this agent allows; stop one first", m.nrunning)
	}
	m.nrunning++
	m.cfg.Busy()
	return nil
}

// release gives a slot back.
func (m *Manager) release() {
	m.mu.Lock()
	m.nrunning--
	m.mu.Unlock()
	m.cfg.Idle()
}

// add makes ses known. It is running when add is called after reserve.
func (m *Manager) add(ses *Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byID[ses.id] = ses
	m.order = append(m.order, ses)
	m.prune()
}

// Stop sends SIGTERM to the session's process group, SIGKILL after grace
// (0 = agentrpc.DefaultGrace), and returns the record once the session and
// every process left in its group have ended, or the agent is going away.
func (m *Manager) Stop(id string, grace time.Duration) (agentrpc.Session, error) {
	ses, err := m.Get(id)
	if err != nil {
		return agentrpc.Session{}, err
	}
	switch {
	case grace < 0 || grace > agentrpc.MaxWait:
		return agentrpc.Session{}, errorf(agentrpc.CodeInvalid, "stop: grace %v is outside 0-%v", grace, agentrpc.MaxWait)
	case grace == 0:
		grace = agentrpc.DefaultGrace
	}
	// An ended session may have left children in its process group
	// (e.g. "cmd &"): Stop ends them too.
	if ses.groupAlive() {
		m.log.Info("session stopping", "session", id)
		ses.stop(grace, m.quitCh())
		m.mu.Lock()
		handing := m.handing
		m.mu.Unlock()
		if handing && ses.groupAlive() {
			return agentrpc.Session{}, errorf(agentrpc.CodeReloading, "the agent is being upgraded: stop of session %s cut short; repeat it", id)
		}
	}
	return ses.Snapshot(), nil
}

// Remove deletes a finished session: its record and its output. A session
// that runs, or whose group still has processes, is refused: stop it first.
func (m *Manager) Remove(id string) error {
	ses, err := m.Get(id)
	if err != nil {
		return err
	}
	if ses.groupAlive() {
		return errorf(agentrpc.CodeInvalid, "session %s is running; stop it first", id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID[id] != ses {
		return errorf(agentrpc.CodeNotFound, "session %q not found", id)
	}
	delete(m.byID, id)
	m.order = slices.DeleteFunc(m.order, func(s *Session) bool { return s == ses })
	ses.out.markRemoved()
	m.remove(id)
	m.log.Info("session removed", "session", id)
	return nil
}

// Shutdown stops every running session (SIGTERM, SIGKILL after grace) and
// waits for their records to be saved. Later starts fail.
func (m *Manager) Shutdown(grace time.Duration) {
	m.Interrupt(false)
	m.mu.Lock()
	m.closed = true
	var run []*Session
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
		m.log.Warn("sessions did not end in time; their records say running and will read lost")
	}
}
