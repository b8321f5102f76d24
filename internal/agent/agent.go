// Package agent is the octo agent's server: it runs one Linux user's sessions
// and file operations, serving the agentrpc protocol to checked peers.
//
// It is the only code that runs user work. It touches the user's workspace
// only through os.Root or openat2 beneath it, its own state directory, and
// the sockets it serves; it passes the control plane read-only descriptors of
// regular files it opened and temporaries of uploads it created, never a
// directory or a path. It has no HTTP server.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"octo/internal/agent/session"
	"octo/internal/agentrpc"
)

// Version is the agent's version, reported by Agent.Info. The build may
// override it with -ldflags "-X octo/internal/agent.Version=...".
var Version = "dev"

// Defaults for the zero values of Config.
const (
	DefaultMaxSessions = 64
	DefaultOutputCap   = 8 << 20
	// DefaultKeepSessions is how many finished sessions (records and
	// output) the state dir keeps; older ones are pruned.
	DefaultKeepSessions = 1000
	// DefaultOutputBudget bounds the output bytes the state dir keeps for
	// finished sessions; the oldest are pruned first.
	DefaultOutputBudget = 256 << 20
	// shutdownGrace is how long running sessions get between SIGTERM and
	// SIGKILL when the agent shuts down, and how long in-flight calls may run.
	shutdownGrace = 3 * time.Second
)

// Config configures a Server.
type Config struct {
	User        string        // login name
	UID, GID    uint32        // normally os.Getuid()/Getgid()
	Home        string        // the user's home directory
	Workspace   string        // absolute; default Home
	StateDir    string        // session records and output files
	AllowUIDs   []uint32      // peers allowed besides 0 and UID
	IdleTimeout time.Duration // 0 = never exit when idle
	MaxSessions int           // running sessions; 0 = DefaultMaxSessions
	OutputCap   int64         // kept output bytes per session; 0 = DefaultOutputCap
	Logger      *slog.Logger  // nil = discard
	// Shell is the SHELL of sessions; "" = /bin/sh.
	Shell string
	// KeepSessions is how many finished sessions are kept; 0 = DefaultKeepSessions.
	KeepSessions int
	// OutputBudget bounds the output bytes kept for all finished sessions
	// together; the oldest finished sessions are pruned first, running
	// ones never. 0 = DefaultOutputBudget.
	OutputBudget int64
	// Reloader runs the next image on reload (Agent.Reload); nil: the
	// agent cannot reload.
	Reloader Reloader
}

// Server is one user's agent. Create it with New and serve with Run.
type Server struct {
	cfg     Config
	log     *slog.Logger
	root    *os.Root
	wsDir   workspaceDir // the workspace's directory, for openat2
	start   time.Time
	allowed map[uint32]bool
	sess    *session.Manager
	idle    *idleTracker
	lock    *os.File // holds the state dir's lock until Run returns
	// inflight counts RPC calls being served; quit is closed at shutdown
	// so that long polls return.
	inflight    atomic.Int64
	draining    atomic.Bool  // a hand-over is under way: calls are refused (reload.go)
	lastRefused atomic.Int64 // when a call was last refused, in Unix nanoseconds
	quit        chan struct{}
	gate        *acceptGate

	reloads *reloads
	runOnce sync.Once
}

// New checks cfg, opens the workspace and loads the persisted sessions.
func New(cfg Config) (*Server, error) {
	return newServer(cfg, nil, session.New)
}

// newServer is New with the state dir's lock already held (lock; nil: take
// it) and the sessions made by sessions.
func newServer(cfg Config, lock *os.File, sessions func(session.Config) (*session.Manager, error)) (*Server, error) {
	if cfg.User == "" {
		return nil, errors.New("agent config: user name is empty")
	}
	if cfg.Workspace == "" {
		cfg.Workspace = cfg.Home
	}
	if cfg.Workspace == "" || !filepath.IsAbs(cfg.Workspace) {
		return nil, fmt.Errorf("agent config: workspace %q must be an absolute path", cfg.Workspace)
	}
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("agent config: state dir %q must be an absolute path", cfg.StateDir)
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.OutputCap <= 0 {
		cfg.OutputCap = DefaultOutputCap
	}
	if cfg.OutputBudget <= 0 {
		cfg.OutputBudget = DefaultOutputBudget
	}
	if cfg.KeepSessions <= 0 {
		cfg.KeepSessions = DefaultKeepSessions
	}
	if cfg.Shell == "" {
		cfg.Shell = "/bin/sh"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	root, err := os.OpenRoot(cfg.Workspace)
	if err != nil {
		return nil, fmt.Errorf("open workspace: %w", err)
	}
	allowed := map[uint32]bool{0: true, cfg.UID: true}
	for _, u := range cfg.AllowUIDs {
		allowed[u] = true
	}
	s := &Server{cfg: cfg, log: log, root: root, wsDir: openWorkspaceDir(root), start: time.Now(), allowed: allowed, quit: make(chan struct{}), reloads: newReloads()}
	s.idle = newIdleTracker(cfg.IdleTimeout)
	// The files are written with the process's uid (cfg.UID may name
	// another user when an in-process agent serves a test).
	if err := session.MakeOwnDir(cfg.StateDir, uint32(os.Geteuid())); err != nil {
		root.Close()
		s.wsDir.close()
		return nil, err
	}
	if s.lock = lock; lock == nil {
		if s.lock, err = lockStateDir(cfg.StateDir); err != nil {
			root.Close()
			s.wsDir.close()
			return nil, err
		}
	}
	if err := s.removeStaleUploads(); err != nil {
		log.Warn("stale uploads not removed", "err", err)
	}
	s.sess, err = sessions(s.sessionConfig())
	if err != nil {
		root.Close()
		s.wsDir.close()
		if lock == nil {
			s.lock.Close()
		}
		return nil, err
	}
	return s, nil
}

// inputTimeout bounds how long WriteInput waits for a session to take its
// input. A variable for tests.
var inputTimeout = 5 * time.Second

// sessionConfig is the session Manager's configuration: the agent's limits,
// and the idle tracker's hooks (a running session keeps the agent alive).
func (s *Server) sessionConfig() session.Config {
	c := s.cfg
	return session.Config{
		User: c.User, Home: c.Home, Shell: c.Shell, Workspace: c.Workspace,
		Dir:         filepath.Join(c.StateDir, "sessions"),
		MaxSessions: c.MaxSessions, KeepSessions: c.KeepSessions,
		OutputCap: c.OutputCap, OutputBudget: c.OutputBudget,
		InputTimeout: inputTimeout,
		Logger:       s.log, Busy: s.idle.inc, Idle: s.idle.dec, Buffer: getChunk,
	}
}

// Run serves ln until ctx is done or the agent has been idle (no open
// connection, no running session) for the idle timeout; either way it
// returns nil. On the way out it closes ln, gives in-flight calls a moment,
// stops running sessions (SIGTERM, then SIGKILL) and persists their records.
// Run may be called once.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	err := errors.New("agent: Run called twice")
	s.runOnce.Do(func() { err = s.run(ctx, ln) })
	return err
}

func (s *Server) run(ctx context.Context, ln net.Listener) error {
	defer s.lock.Close()
	defer s.root.Close()
	defer s.wsDir.close()
	conns := newConnSet()
	s.gate = newAcceptGate(ln, s.quit)
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- s.acceptLoop(ln, conns) }()
	s.idle.start()
	defer s.idle.stop()
	// Debug, not Info: systemd journals the unit's start, and a line of
	// our own on every start costs journald more CPU than the rest of a
	// cold start's logging (bench/coldstart.sh).
	s.log.Debug("agent serving", "user", s.cfg.User, "uid", s.cfg.UID, "workspace", s.cfg.Workspace,
		"socket", ln.Addr().String(), "sessions", len(s.sess.List()), "version", Version)

	var err error
wait:
	for {
		select {
		case <-ctx.Done():
			s.log.Debug("agent stopping", "reason", "signal")
			break wait
		case <-s.idle.fired():
			if testHookIdle != nil {
				testHookIdle()
			}
			// Stop accepting, then decide: a connection accepted up to
			// the pause is served, not closed under its first call.
			// Connections not yet accepted stay queued on the socket
			// (with socket activation, for the next agent).
			if s.gate.pause() && !s.idle.idleNow() {
				s.gate.resume()
				s.idle.rearm()
				continue
			}
			s.log.Info("agent idle, exiting", "idle_timeout", s.cfg.IdleTimeout.String())
			break wait
		case token := <-s.reloads.start:
			s.reload(ln, conns, token) // returns only if the reload failed
		case err = <-acceptErr:
			err = fmt.Errorf("accept: %w", err)
			break wait
		}
	}
	ln.Close()
	close(s.quit)
	s.sess.Interrupt(false)
	conns.closeAfter(shutdownGrace, s.inflight.Load)
	s.sess.Shutdown(shutdownGrace)
	return err
}

// testHookIdle, when set by a test, runs when the idle timeout fires,
// before the agent decides to exit.
var testHookIdle func()

// Info describes the agent.
func (s *Server) Info() agentrpc.Info {
	return agentrpc.Info{
		User:            s.cfg.User,
		UID:             s.cfg.UID,
		GID:             s.cfg.GID,
		Home:            s.cfg.Home,
		Workspace:       s.cfg.Workspace,
		Version:         Version,
		PID:             os.Getpid(),
		StartTime:       s.start,
		RunningSessions: s.sess.Running(),
	}
}

// ErrStateDirUnsafe is returned by New when the state dir or its sessions
// dir could be changed by someone else (see session.ErrStateDirUnsafe).
var ErrStateDirUnsafe = session.ErrStateDirUnsafe
