package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"octo/internal/agent"
	"octo/internal/agentflags"
	"octo/internal/gateway"
	"octo/internal/peercred"
	"octo/internal/slurm"
)

// dialMain runs the agent placed by Slurm on a cluster node. Instead of
// listening, it dials the control plane's gateway (address, launch, token
// and CA fingerprint from the job's environment) over TLS, proves itself,
// and serves the agent protocol on that link, the control plane being the
// client. It exits when the link
// has carried no request for the idle timeout and no session runs, which
// ends the job.
func dialMain(ctx context.Context, args []string, log *slog.Logger) error {
	o, err := agentflags.Parse(args)
	if err != nil {
		return err
	}
	d, err := dialerFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	if o.StateDir == "" {
		// The user's local agent (which submitted this job) holds the
		// default state dir on the shared home.
		o.StateDir = filepath.Join(stateHome(), "octo-agent-slurm")
	}
	cfg, err := o.Config(log)
	if err != nil {
		return err
	}
	srv, err := newWhenFree(ctx, cfg, stateDirWait, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ln := newDialListener(ctx, d, log)
	if o.IdleTimeout > 0 {
		go ln.watchIdle(ctx, o.IdleTimeout, func() bool { return srv.Info().RunningSessions == 0 }, cancel)
	}
	log.Info("octo-agent-dial dialing the gateway", "gateway", d.Addr, "launch", d.LaunchID)
	err = srv.Run(ctx, ln)
	if err == nil {
		log.Info("octo-agent stopped")
	}
	return err
}

// stateDirWait is how long a placed agent waits for the state dir: after
// its node failed, the previous agent of the user (on that node, cut off
// from Slurm but maybe alive for a while, or its lock held by the shared
// file system until its lease ends) may still hold it.
const stateDirWait = 2 * time.Minute

// newWhenFree is agent.New, waiting up to wait while another agent holds
// the state dir.
func newWhenFree(ctx context.Context, cfg agent.Config, wait time.Duration, log *slog.Logger) (*agent.Server, error) {
	deadline := time.Now().Add(wait)
	for logged := false; ; logged = true {
		srv, err := agent.New(cfg)
		if !errors.Is(err, agent.ErrStateDirInUse) || time.Now().After(deadline) {
			return srv, err
		}
		if !logged {
			log.Warn("state dir in use by another agent; waiting for it", "err", err, "wait", wait.String())
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func stateHome() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state")
}

// dialerFromEnv reads the bootstrap variables sbatch exported.
func dialerFromEnv(getenv func(string) string) (*gateway.Dialer, error) {
	d := &gateway.Dialer{Addr: getenv(slurm.EnvGateway), LaunchID: getenv(slurm.EnvLaunch),
		Token: getenv(slurm.EnvToken), CASHA256: getenv(slurm.EnvCASHA256)}
	for _, v := range []struct{ name, value string }{{slurm.EnvGateway, d.Addr}, {slurm.EnvLaunch, d.LaunchID},
		{slurm.EnvToken, d.Token}, {slurm.EnvCASHA256, d.CASHA256}} {
		if v.value == "" {
			return nil, fmt.Errorf("$%s is not set: octo-agent-dial runs in a Slurm job octo submitted", v.name)
		}
	}
	d.Munge = func(ctx context.Context) ([]byte, error) {
		return exec.CommandContext(ctx, "munge", "--no-input").Output()
	}
	return d, nil
}

// dialListener is the agent's listener in dial mode: Accept opens a link
// to the gateway when none is open, and waits while one is.
type dialListener struct {
	ctx  context.Context
	d    *gateway.Dialer
	log  *slog.Logger
	free chan struct{} // holds a token while no link is open

	mu       sync.Mutex
	link     *link // the newest link
	closed   chan struct{}
	closeOne sync.Once
}

func newDialListener(ctx context.Context, d *gateway.Dialer, log *slog.Logger) *dialListener {
	l := &dialListener{ctx: ctx, d: d, log: log, free: make(chan struct{}, 1), closed: make(chan struct{})}
	l.free <- struct{}{}
	return l
}

// Accept returns the next link. A refusal by the gateway is final (the
// job is not, or no longer, what the control plane launched): Accept
// returns it and the agent exits. Network failures, and the gateway's
// failures to check (squeue or unmunge not answering), are retried.
func (l *dialListener) Accept() (net.Conn, error) {
	select {
	case <-l.free:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	backoff := 100 * time.Millisecond
	for {
		c, err := l.d.Dial(l.ctx)
		if err == nil {
			lk := &link{Conn: c, release: func() { l.free <- struct{}{} }}
			lk.lastRead.Store(time.Now().UnixNano())
			l.mu.Lock()
			l.link = lk
			l.mu.Unlock()
			return lk, nil
		}
		var r *gateway.RefusedError
		if errors.As(err, &r) && r.Code != gateway.RefuseCheck {
			return nil, err // not temporary: the accept loop ends the agent
		}
		// A network failure, or the gateway could not ask Slurm (its
		// controller restarting): try again. A spent token is refused
		// for good on the next try; a certificate is not spent.
		l.log.Warn("gateway unreachable, retrying", "err", err, "backoff", backoff.String())
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		case <-l.ctx.Done():
			return nil, net.ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (l *dialListener) Close() error {
	l.closeOne.Do(func() { close(l.closed) })
	return nil
}

func (l *dialListener) Addr() net.Addr { return gatewayAddr(l.d.Addr) }

// watchIdle calls exit once the open link has carried no request for
// idle while idleNow (no running session) holds. Without a link, the
// agent's own idle timeout applies.
func (l *dialListener) watchIdle(ctx context.Context, idle time.Duration, idleNow func() bool, exit func()) {
	t := time.NewTicker(max(idle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		lk := l.link
		l.mu.Unlock()
		if lk == nil || lk.done.Load() {
			continue
		}
		if time.Since(time.Unix(0, lk.lastRead.Load())) >= idle && idleNow() {
			l.log.Info("agent idle, exiting", "idle_timeout", idle.String())
			exit()
			return
		}
	}
}

type gatewayAddr string

func (a gatewayAddr) Network() string { return "octo-gateway" }
func (a gatewayAddr) String() string  { return string(a) }

// link is an admitted connection to the gateway. Its peer is the control
// plane the agent verified by its pinned CA, acting for this user: it
// carries the agent's own identity as its credentials.
type link struct {
	net.Conn
	release  func()
	once     sync.Once
	done     atomic.Bool
	lastRead atomic.Int64 // unix nanoseconds of the last request bytes
}

var _ agent.Credentialed = (*link)(nil)

func (c *link) PeerCred() (peercred.Cred, error) {
	return peercred.Cred{PID: 0, UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}, nil
}

func (c *link) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

// Close closes the link once and lets Accept dial the next.
func (c *link) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.done.Store(true)
		c.release()
	})
	return err
}
