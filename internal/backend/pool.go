package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/rpc"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/peercred"
)

// Safety says whether a call may be sent twice.
type Safety bool

// Call safety.
const (
	Once       Safety = false // Start, Write, Input, Signal, Stop...: retried only if never sent
	Repeatable Safety = true  // Info, List, Stat, Read, Get: retried once after a lost connection
)

// DefaultIdleClose is how long a pooled connection may go unused before the
// pool closes it, which lets an idle agent exit.
const DefaultIdleClose = time.Minute

// Pool keeps one agent connection per user, dials on demand and reconnects
// when an agent has exited.
type Pool struct {
	router         *Router
	connectTimeout time.Duration
	idleClose      time.Duration
	noFDs          atomic.Bool // connections made from now on pass no descriptors
	log            *slog.Logger
	// Connected, when set before the pool is first used, is called after
	// each new connection to an agent (for metrics).
	Connected func(User, Endpoint)
	// Called, when set before the pool is first used, is called after
	// every agent call with its method and error (agentrpc.Client.Observe).
	Called func(method string, err error)

	mu      sync.Mutex
	conns   map[string]*conn     // by user name
	dialing map[string]*dialGate // by user name, while a request of the user dials or waits to dial
	stop    chan struct{}
	once    sync.Once
}

// dialGate lets one request of a user dial (or start a container) at a time.
type dialGate struct {
	mu      sync.Mutex
	waiters int // requests holding or waiting for mu (Pool.mu guards it); the gate goes with the last
}

type conn struct {
	client   *agentrpc.Client
	ep       Endpoint
	inflight int
	lastUse  time.Time
}

// NewPool returns a pool dialing through router. Close stops it.
func NewPool(router *Router, connectTimeout time.Duration, log *slog.Logger) *Pool {
	p := &Pool{router: router, connectTimeout: connectTimeout, idleClose: DefaultIdleClose,
		log: log, conns: map[string]*conn{}, dialing: map[string]*dialGate{}, stop: make(chan struct{})}
	go p.janitor()
	return p
}

// Router returns the pool's router.
func (p *Pool) Router() *Router { return p.router }

// Do runs fn with a client for u's agent and returns the endpoint that
// served it. When the connection turns out to be lost, Do reconnects and runs
// fn again if it was never sent or safety is Repeatable. Failures to reach
// the agent are *Error values; the agent's own errors come back unchanged.
func (p *Pool) Do(ctx context.Context, u User, safety Safety, fn func(*agentrpc.Client) error) (Endpoint, error) {
	for attempt := 0; ; attempt++ {
		c, err := p.get(ctx, u)
		if err != nil {
			return Endpoint{}, err
		}
		err = fn(c.client)
		p.release(u.Name, c, err)
		switch {
		case err == nil:
			return c.ep, nil
		case errors.Is(err, context.DeadlineExceeded):
			return c.ep, &Error{Code: CodeTimeout,
				Message: fmt.Sprintf("%s's agent did not answer in time", u.Name), Err: err}
		case errors.Is(err, agentrpc.ErrBadReply):
			return c.ep, &Error{Code: CodeFailed,
				Message: fmt.Sprintf("%s's agent sent a reply the control plane refused (over %d bytes, or malformed); the connection was closed", u.Name, agentrpc.MaxReplySize), Err: err}
		case errors.Is(err, agentrpc.ErrReloading):
			// The agent is handing over to a new binary and did not run
			// fn; release dropped the connection, and the next one waits
			// for the new binary.
			if attempt < 3 {
				continue
			}
			return c.ep, err
		case !errors.Is(err, agentrpc.ErrConnLost):
			return c.ep, err
		}
		// The agent went away: idle exit, restart or crash.
		neverSent := errors.Is(err, rpc.ErrShutdown)
		if attempt == 0 && (neverSent || safety == Repeatable) {
			continue
		}
		return c.ep, &Error{Code: CodeFailed,
			Message: fmt.Sprintf("%s's agent closed the connection before answering; the request may or may not have taken effect", u.Name), Err: err}
	}
}

// get returns the user's pooled connection, dialing one if needed.
// Concurrent requests of one user wait for a single dial.
func (p *Pool) get(ctx context.Context, u User) (*conn, error) {
	if c := p.pooled(u.Name); c != nil {
		return c, nil
	}
	p.mu.Lock()
	g := p.dialing[u.Name]
	if g == nil {
		g = &dialGate{}
		p.dialing[u.Name] = g
	}
	g.waiters++
	p.mu.Unlock()
	// Every user ever seen would otherwise keep a gate: the last request
	// out removes it (after unlocking it, deferred below).
	defer func() {
		p.mu.Lock()
		if g.waiters--; g.waiters == 0 {
			delete(p.dialing, u.Name)
		}
		p.mu.Unlock()
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := p.pooled(u.Name); c != nil { // another request dialed meanwhile
		return c, nil
	}
	ep, err := p.router.Endpoint(ctx, u)
	if err != nil {
		return nil, err
	}
	client, err := p.dial(ctx, u, ep)
	if err != nil {
		return nil, err
	}
	if p.Called != nil {
		client.Observe(p.Called)
	}
	c := &conn{client: client, ep: ep, inflight: 1}
	p.mu.Lock()
	p.conns[u.Name] = c
	p.mu.Unlock()
	// Debug: connecting is routine (every agent start, after every idle
	// exit), and each line costs journald; failures are errors of the call.
	p.log.Debug("agent connected", "user", u.Name, "placement", ep.Placement, "socket", ep.Socket)
	if p.Connected != nil {
		p.Connected(u, ep)
	}
	return c, nil
}

// pooled returns the user's connection, counted as in use, or nil.
func (p *Pool) pooled(name string) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[name]
	if c != nil {
		c.inflight++
	}
	return c
}

func (p *Pool) release(name string, c *conn, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.inflight--
	c.lastUse = time.Now()
	if (errors.Is(err, agentrpc.ErrConnLost) || errors.Is(err, agentrpc.ErrBadReply) || errors.Is(err, agentrpc.ErrReloading)) && p.conns[name] == c {
		delete(p.conns, name)
		c.client.Close()
		p.log.Debug("agent connection lost", "user", name, "placement", c.ep.Placement, "err", err)
	}
}

// dial connects to ep and checks, with SO_PEERCRED, that whoever called
// listen() on the socket is who that placement's agent must be (ownerUID): a
// socket planted by anyone else never receives u's requests, and u cannot
// stand in for the system agent, whose replies the control plane trusts
// more than those of an agent u controls.
func (p *Pool) dial(ctx context.Context, u User, ep Endpoint) (*agentrpc.Client, error) {
	if ep.Placement == PlacementSlurm {
		// The gateway proved who dialed in (launch token, job, node,
		// MUNGE, then its certificate): no socket to check.
		return agentrpc.NewClient(ep.Link), nil
	}
	dctx, cancel := context.WithTimeout(ctx, p.connectTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "unix", ep.Socket)
	if err != nil {
		return nil, dialError(u, ep, p.connectTimeout, err)
	}
	cred, err := peercred.Get(nc)
	if err != nil {
		nc.Close()
		return nil, unavailable("check agent socket "+ep.Socket, err)
	}
	if want := p.ownerUID(ep.Placement, u); cred.UID != want {
		nc.Close()
		return nil, unavailable(fmt.Sprintf("agent socket %s owned by uid %d, want %d for the %s placement; refusing it", ep.Socket, cred.UID, want, ep.Placement), nil)
	}
	if p.noFDs.Load() {
		// Hidden behind a plain net.Conn, the socket carries no
		// descriptors: files move in chunks, as from a remote agent.
		return agentrpc.NewClient(struct{ net.Conn }{nc}), nil
	}
	return agentrpc.NewClient(nc), nil
}

// DisableFDPassing makes the connections the pool dials from now on move
// file bytes in chunks instead of passing descriptors, as a transport
// without descriptor passing does. Tests use it to exercise that path.
func (p *Pool) DisableFDPassing() { p.noFDs.Store(true) }

// ownerUID is the uid that must hold the listening socket of u's agent at
// placement pl: root for the system agent (systemd's PID 1 listens on
// octo-agent@USER.socket, and only root can create sockets in /run/octo),
// u for an agent u runs (systemd --user or in a container), and the
// invoking user for octo dev's in-process agent.
func (p *Pool) ownerUID(pl Placement, u User) uint32 {
	switch pl {
	case PlacementSystem:
		return 0
	case PlacementDev:
		return p.router.cfg.DevUID
	}
	return u.UID
}

func dialError(u User, ep Endpoint, timeout time.Duration, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeTimeout,
			Message: fmt.Sprintf("connect to %s's agent at %s timed out after %s", u.Name, ep.Socket, timeout), Err: err}
	case errors.Is(err, syscall.EAGAIN):
		return unavailable(fmt.Sprintf("%s's agent socket %s has a full connection queue: the agent is overloaded or hung", u.Name, ep.Socket), err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return unavailable(fmt.Sprintf("%s's agent socket %s refused the connection: nothing listens on it (check: systemctl status octo-agent@%s.socket)", u.Name, ep.Socket, u.Name), err)
	case errors.Is(err, fs.ErrNotExist):
		return unavailable(fmt.Sprintf("%s's agent socket %s disappeared", u.Name, ep.Socket), err)
	case errors.Is(err, fs.ErrPermission):
		return unavailable(fmt.Sprintf("the control plane may not connect to %s (check the socket's mode and owner)", ep.Socket), err)
	}
	return unavailable(fmt.Sprintf("connect to %s's agent at %s", u.Name, ep.Socket), err)
}

// janitor closes connections unused for idleClose, so idle agents can exit.
func (p *Pool) janitor() {
	t := time.NewTicker(p.idleClose / 2)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.closeIdle(p.idleClose)
		}
	}
}

func (p *Pool) closeIdle(idle time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, c := range p.conns {
		// A dialed-in agent ends itself (and its job) when its link carries
		// no request for its idle timeout; closing the link would only make
		// it dial again.
		if c.inflight == 0 && time.Since(c.lastUse) >= idle && c.ep.Placement != PlacementSlurm {
			c.client.Close()
			delete(p.conns, name)
		}
	}
}

// Close closes all connections and stops the pool.
func (p *Pool) Close() {
	p.once.Do(func() { close(p.stop) })
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, c := range p.conns {
		c.client.Close()
		delete(p.conns, name)
	}
}
