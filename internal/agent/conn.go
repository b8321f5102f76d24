package agent

import (
	"errors"
	"net"
	"net/rpc"
	"sync"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/peercred"
)

// acceptLoop accepts connections until ln is closed, checking each peer
// before anything is read from it. It returns nil once ln is closed.
func (s *Server) acceptLoop(ln net.Listener, conns *connSet) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if s.gate.paused(err) {
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "backoff", backoff.String())
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		cred, err := peerCred(c)
		if err != nil {
			s.log.Warn("peer denied: no credentials", "err", err)
			c.Close()
			continue
		}
		if !s.allowed[cred.UID] {
			s.log.Warn("peer denied", "pid", cred.PID, "uid", cred.UID, "gid", cred.GID)
			c.Close()
			continue
		}
		if uc, ok := c.(*net.UnixConn); ok {
			// A 1 MiB chunk then crosses in one write instead of five
			// (the kernel caps this at net.core.wmem_max).
			uc.SetWriteBuffer(sockBuffer)
		}
		if !conns.add(c) {
			s.log.Warn("connection refused", "reason", "too many open connections or shutting down", "pid", cred.PID, "uid", cred.UID)
			c.Close()
			continue
		}
		s.idle.inc()
		go func() {
			defer s.idle.dec()
			defer conns.remove(c)
			s.serveConn(c, cred)
		}()
	}
}

// sockBuffer is the send buffer asked for each connection: a full read
// chunk plus its framing.
const sockBuffer = 2 << 20

// isTemporary reports accept errors worth retrying (out of file descriptors,
// a connection aborted before it was accepted).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn serves net/rpc on c with services bound to the caller's identity.
func (s *Server) serveConn(c net.Conn, cred peercred.Cred) {
	srv := rpc.NewServer()
	caller := &call{s: s, cred: &cred}
	_, caller.fds = c.(*net.UnixConn)
	defer caller.uploads.abortAll()
	// Registration only fails for services without suitable methods: a bug.
	for name, rcvr := range map[string]any{
		"Agent":   &AgentService{caller},
		"Session": &SessionService{caller},
		"File":    &FileService{caller},
	} {
		if err := srv.RegisterName(name, rcvr); err != nil {
			panic("agent: register " + name + ": " + err.Error())
		}
	}
	codec := newServerCodec(c)
	serveWorkers(srv, codec)
	if errors.Is(codec.rl.err, agentrpc.ErrPreamble) {
		s.log.Warn("peer denied: it does not speak this agent's protocol (an older or newer octo?)", "pid", cred.PID, "uid", cred.UID)
	}
}

// call is what every service method knows: the server and the caller's
// identity on this connection.
type call struct {
	s    *Server
	cred *peercred.Cred // as SO_PEERCRED said at accept; nil: none, every call refused
	// fds is true when replies on this connection may carry descriptors.
	fds     bool
	uploads uploadSet // this connection's uploads in progress
}

// do runs one RPC method's body for this connection's caller: it refuses
// when the caller's identity is missing, counts the call as in flight, and
// encodes the body's error so that its code crosses net/rpc.
func (c *call) do(body func() error) error {
	if c.cred == nil {
		return agentrpc.Encode(errorf(agentrpc.CodePermission, "no caller identity on this connection"))
	}
	c.s.inflight.Add(1)
	defer c.s.inflight.Add(-1)
	if c.s.draining.Load() { // after the count: see Server.handOver
		return agentrpc.Encode(c.s.refuse())
	}
	return agentrpc.Encode(body())
}

// connSet tracks open connections so shutdown can close them.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed when the set is closed and empty
}

func newConnSet() *connSet {
	return &connSet{conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
}

// maxConns bounds the connections open at once.
const maxConns = 1024

func (cs *connSet) add(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed || len(cs.conns) >= maxConns {
		return false
	}
	cs.conns[c] = struct{}{}
	return true
}

func (cs *connSet) remove(c net.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.conns, c)
	if cs.closed && len(cs.conns) == 0 {
		select {
		case <-cs.done:
		default:
			close(cs.done)
		}
	}
}

// closeAfter stops new connections, waits up to grace for calls in flight
// (busy reports their number) to finish, then closes every connection and
// waits for their handlers.
func (cs *connSet) closeAfter(grace time.Duration, busy func() int64) {
	cs.mu.Lock()
	cs.closed = true
	if len(cs.conns) == 0 {
		close(cs.done)
	}
	cs.mu.Unlock()
	deadline := time.Now().Add(grace)
	for busy() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cs.mu.Lock()
	for c := range cs.conns {
		c.Close()
	}
	cs.mu.Unlock()
	<-cs.done
}
