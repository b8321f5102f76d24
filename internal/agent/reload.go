package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"octo/internal/agent/session"
	"octo/internal/agentrpc"
)

// Reloader runs the next image of the agent on reload; octo-agent provides
// it (the exec is the process's business, not the server's).
type Reloader interface {
	// Prepare is called when a reload starts, before anything pauses: it
	// checks that the new binary can take over.
	Prepare() error
	// Exec runs the new binary in this process with h. It returns only if
	// that failed, with every descriptor of h still usable here.
	Exec(h *Handover) error
	// Resumed is called when the agent serves again after a failed reload.
	Resumed(err error)
}

// Handover is what the agent hands its next image: the running sessions,
// the listening socket (connections not yet accepted wait in its queue for
// the new image), the state dir's lock and the reload's token.
type Handover struct {
	Token     string
	StartTime time.Time
	Sessions  *session.Handover
	Listener  *os.File
	Lock      *os.File
	// Failed is set by a new image that gave up and handed back: the
	// reason the old image records for Token.
	Failed string
}

// reloadDrain bounds the wait for calls in progress before a hand-over.
const reloadDrain = 3 * time.Second

// reloadQuiet is how long no call may have been refused before the
// connections close: calls already on their way arrive meanwhile and are
// refused (not lost), and clients, told by the first refusal, reconnect.
const reloadQuiet = 25 * time.Millisecond

// refuse records that a call was refused because of a hand-over and
// returns the error that says so: the caller may repeat it on a new
// connection, which the new binary serves.
func (s *Server) refuse() error {
	s.lastRefused.Store(time.Now().UnixNano())
	return errorf(agentrpc.CodeReloading, "the agent is being upgraded and did not run this call; repeat it on a new connection")
}

// reloads remembers the reload under way and how recent ones ended.
type reloads struct {
	mu      sync.Mutex
	running string
	ended   map[string]string // token → "" (the new binary serves) or why not
	start   chan string
}

func newReloads() *reloads {
	return &reloads{ended: map[string]string{}, start: make(chan string, 1)}
}

func validToken(t string) bool {
	if len(t) == 0 || len(t) > 64 {
		return false
	}
	for _, c := range t {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// end records how reload token went.
func (r *reloads) end(token, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ended) >= 16 {
		clear(r.ended)
	}
	r.ended[token] = reason
	r.running = ""
}

// Reload starts a reload, or reports on one (see agentrpc.ReloadRequest).
// Only root and the agent's own user may: a reload runs whatever binary is
// installed at the agent's path, and the control plane has no need to.
func (a *AgentService) Reload(req *agentrpc.ReloadRequest, reply *agentrpc.ReloadReply) error {
	return a.c.do(func() error {
		s := a.c.s
		if uid := a.c.cred.UID; uid != 0 && uid != s.cfg.UID {
			return errorf(agentrpc.CodePermission, "only root and %s may reload this agent", s.cfg.User)
		}
		if !validToken(req.Token) {
			return errorf(agentrpc.CodeInvalid, "reload: token %q must be 1-64 letters and digits", req.Token)
		}
		*reply = agentrpc.ReloadReply{Version: Version, PID: os.Getpid()}
		r := s.reloads
		r.mu.Lock()
		defer r.mu.Unlock()
		if reason, ok := r.ended[req.Token]; ok {
			reply.Done, reply.Error = true, reason
			return nil
		}
		switch {
		case r.running == req.Token:
			return nil
		case req.Wait:
			return errorf(agentrpc.CodeNotFound, "no reload named %s here; start one first", req.Token)
		case s.cfg.Reloader == nil:
			return errorf(agentrpc.CodeInvalid, "this agent cannot reload: it was not started by octo-agent serve")
		case r.running != "":
			return errorf(agentrpc.CodeLimit, "reload %s is under way; wait for it", r.running)
		}
		r.running = req.Token
		r.start <- req.Token
		return nil
	})
}

// reload hands the agent over to its next image. It returns only if that
// failed, with the agent serving again.
func (s *Server) reload(ln net.Listener, conns *connSet, token string) {
	t0 := time.Now()
	s.log.Info("agent reloading", "token", token, "running_sessions", s.sess.Running())
	err := s.cfg.Reloader.Prepare()
	if err == nil {
		err = s.handOver(ln, conns, token)
	}
	s.log.Error("reload failed; this agent goes on serving", "token", token, "err", err, "took", time.Since(t0).String())
	// Ready again (systemd) before the outcome shows: the reload command
	// returns only once systemd may consider the reload over.
	s.cfg.Reloader.Resumed(err)
	s.reloads.end(token, err.Error())
}

func (s *Server) handOver(ln net.Listener, conns *connSet, token string) error {
	lf, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return errors.New("hand over: the listener has no descriptor")
	}
	if !s.gate.pause() {
		return errors.New("hand over: cannot pause accepting connections")
	}
	defer s.gate.resume()
	// From here every new call is refused with code reloading (the
	// count comes first in call.do, so none slips past the wait below).
	s.draining.Store(true)
	defer s.draining.Store(false)
	// Calls on their way have reloadQuiet to arrive and be refused.
	s.lastRefused.Store(time.Now().UnixNano())
	s.sess.Interrupt(true) // long polls return, stops fail with code reloading
	defer s.sess.Thaw()
	if !conns.drain(reloadDrain, s.inflight.Load, s.quietSince) {
		return fmt.Errorf("hand over: calls still in progress after %v; try again", reloadDrain)
	}
	sh, err := s.sess.Freeze()
	if err != nil {
		return fmt.Errorf("hand over: %w", err)
	}
	lnFile, err := lf.File()
	if err != nil {
		return fmt.Errorf("hand over: listener: %w", err)
	}
	defer lnFile.Close()
	h := &Handover{Token: token, StartTime: s.start, Sessions: sh, Listener: lnFile, Lock: s.lock}
	return s.cfg.Reloader.Exec(h)
}

// quietSince returns how long ago a call was last refused.
func (s *Server) quietSince() time.Duration {
	return time.Since(time.Unix(0, s.lastRefused.Load()))
}

// drain waits up to grace for the calls in progress (busy counts them) and
// until no call has been refused for reloadQuiet (quiet says how long),
// then closes every connection and waits for their handlers. Clients
// reconnect; their connections wait in the listener's queue. It reports
// false, closing nothing, if calls were still in progress.
func (cs *connSet) drain(grace time.Duration, busy func() int64, quiet func() time.Duration) bool {
	for deadline := time.Now().Add(grace); busy() > 0 || quiet() < reloadQuiet; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			return busy() == 0
		}
	}
	cs.mu.Lock()
	for c := range cs.conns {
		c.Close()
	}
	cs.mu.Unlock()
	for {
		cs.mu.Lock()
		n := len(cs.conns)
		cs.mu.Unlock()
		if n == 0 {
			return true
		}
		time.Sleep(time.Millisecond)
	}
}

// Adopt returns a Server that takes over from the image before it, which
// handed over h (its session descriptors are files, in h.Sessions' order),
// and the listener to serve. A failed hand-back (h.Failed) is recorded as
// the outcome of h.Token. If Adopt fails, every descriptor of h is still
// open, for handing back.
func Adopt(cfg Config, h *Handover, files []*os.File) (*Server, net.Listener, error) {
	ln, err := net.FileListener(h.Listener) // a copy of the descriptor
	if err != nil {
		return nil, nil, fmt.Errorf("adopt listener: %w", err)
	}
	s, err := newServer(cfg, h.Lock, func(sc session.Config) (*session.Manager, error) {
		return session.Adopt(sc, h.Sessions, files)
	})
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	h.Listener.Close()
	s.start = h.StartTime
	s.reloads.end(h.Token, h.Failed)
	return s, ln, nil
}
