// Package gateway is where agents placed on other machines dial in: a TLS
// 1.3 listener that proves who each agent is (a single-use launch token,
// the Slurm job running as that user on the node the connection comes
// from, a MUNGE credential of the user's uid) before issuing it a client
// certificate and handing the connection to the control plane, keyed by
// that verified identity only.
package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"octo/internal/slurm"
)

// Verifier answers the questions the gateway asks Slurm and MUNGE.
type Verifier interface {
	Jobs(ctx context.Context, user string) ([]slurm.Job, error)
	NodeAddrs(ctx context.Context) (map[string]string, error)
	Unmunge(ctx context.Context, cred []byte) (uint32, error)
}

// SlurmVerifier asks squeue, sinfo and unmunge, run by R.
type SlurmVerifier struct{ R slurm.Runner }

func (v SlurmVerifier) Jobs(ctx context.Context, user string) ([]slurm.Job, error) {
	return slurm.Queue(ctx, v.R, user)
}

func (v SlurmVerifier) NodeAddrs(ctx context.Context) (map[string]string, error) {
	return slurm.NodeAddrs(ctx, v.R)
}

func (v SlurmVerifier) Unmunge(ctx context.Context, cred []byte) (uint32, error) {
	return slurm.Unmunge(ctx, v.R, cred)
}

// Config configures a Gateway.
type Config struct {
	CA       *CA
	Hosts    []string      // names and addresses agents dial (in the server certificate)
	TokenTTL time.Duration // how long a launch token may wait to be used; 0 = 5m
	CertTTL  time.Duration // client certificate lifetime; 0 = 12h
	Verifier Verifier
	// LookupUID gives a user's uid, for certificate reconnects of launches
	// this process did not create (after a restart).
	LookupUID func(user string) (uint32, error)
	Log       *slog.Logger
}

// Identity is who a link's agent was proven to be.
type Identity struct {
	User     string
	UID      uint32
	LaunchID string
	JobID    string
	Node     string
}

// Link is a verified agent connection, ready for the agent protocol.
type Link struct {
	Conn net.Conn
	Identity

	watched chan struct{} // closed when the parked link's watcher has stopped
	dead    bool          // the watcher saw the agent hang up while parked
}

// Gateway accepts agents. Create it with New and serve with Run.
type Gateway struct {
	cfg      Config
	tls      *tls.Config
	launches launches

	mu    sync.Mutex
	links map[string]*Link         // by user: connected, not yet taken
	wake  map[string]chan struct{} // by user: closed when a link arrives

	hsMu       sync.Mutex
	handshakes map[string]int // by remote address: admissions in progress
}

// MaxHandshakesPerHost bounds the admissions in progress from one address
// (a node): before admission nobody is known, and one host's flood of
// silent connections must not hold everyone else's.
const MaxHandshakesPerHost = 32

// New returns a gateway with a fresh server certificate for cfg.Hosts.
func New(cfg Config) (*Gateway, error) {
	if cfg.CA == nil || cfg.Verifier == nil || cfg.LookupUID == nil {
		return nil, errors.New("gateway: config needs a CA, a verifier and LookupUID")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 5 * time.Minute
	}
	if cfg.CertTTL <= 0 {
		cfg.CertTTL = 12 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cert, err := cfg.CA.ServerCert(cfg.Hosts, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cfg.CA.Cert)
	g := &Gateway{cfg: cfg, links: map[string]*Link{}, wake: map[string]chan struct{}{}, handshakes: map[string]int{}}
	g.tls = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}
	return g, nil
}

// Fingerprint is what agents pin: the CA's SHA-256.
func (g *Gateway) Fingerprint() string { return g.cfg.CA.Fingerprint() }

// NewLaunch records a launch of user's agent and returns it with its
// bootstrap token (only its hash is kept).
func (g *Gateway) NewLaunch(user string, uid uint32) (Launch, string) {
	return g.launches.create(user, uid, g.cfg.TokenTTL)
}

// SetJob records the Slurm job of a launch.
func (g *Gateway) SetJob(launchID, jobID string) error { return g.launches.setJob(launchID, jobID) }

// Adopt records a launch found in squeue (after a restart): its agent may
// reconnect with its certificate.
func (g *Gateway) Adopt(launchID, user string, uid uint32, jobID string) {
	g.launches.adopt(launchID, user, uid, jobID)
}

// Forget drops a launch (its job ended or was cancelled).
func (g *Gateway) Forget(launchID string) { g.launches.remove(launchID) }

// PruneLaunches forgets the launches whose job is known and for which live
// (squeue lists it) is false, and returns how many it forgot.
func (g *Gateway) PruneLaunches(live func(jobID string) bool) int { return g.launches.prune(live) }

// Launch returns a launch by id.
func (g *Gateway) Launch(id string) (Launch, bool) { return g.launches.get(id) }

// handshakeTimeout bounds the TLS handshake, hello, checks and welcome.
const handshakeTimeout = 20 * time.Second

// Run accepts agents on ln until ctx is done, then closes ln and the links
// nobody took.
func (g *Gateway) Run(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				g.closeParked()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("gateway accept: %w", err)
		}
		host := remoteHost(c)
		if !g.startHandshake(host) {
			g.cfg.Log.Warn("agent refused", "remote", c.RemoteAddr().String(), "code", "busy",
				"reason", fmt.Sprintf("over %d admissions in progress from this address", MaxHandshakesPerHost))
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.serve(ctx, c, func() { g.endHandshake(host) })
		}()
	}
}

func remoteHost(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

func (g *Gateway) startHandshake(host string) bool {
	g.hsMu.Lock()
	defer g.hsMu.Unlock()
	if g.handshakes[host] >= MaxHandshakesPerHost {
		return false
	}
	g.handshakes[host]++
	return true
}

func (g *Gateway) endHandshake(host string) {
	g.hsMu.Lock()
	defer g.hsMu.Unlock()
	if g.handshakes[host]--; g.handshakes[host] <= 0 {
		delete(g.handshakes, host)
	}
}

// serve admits the agent on c (or refuses it); done is called once the
// admission is over either way.
func (g *Gateway) serve(ctx context.Context, c net.Conn, done func()) {
	defer done()
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(c, g.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		g.cfg.Log.Warn("agent refused", "remote", c.RemoteAddr().String(), "code", "tls", "err", err)
		c.Close()
		return
	}
	var h hello
	if err := readLine(tc, &h); err != nil {
		g.cfg.Log.Warn("agent refused", "remote", c.RemoteAddr().String(), "code", RefuseHello, "err", err)
		writeLine(tc, welcome{Code: RefuseHello, Message: "malformed hello"})
		tc.Close()
		return
	}
	id, cert, err := g.admit(ctx, tc, h)
	if err != nil {
		var r *RefusedError
		if !errors.As(err, &r) {
			r = refuse(RefuseCheck, err.Error())
		}
		g.cfg.Log.Warn("agent refused", "remote", c.RemoteAddr().String(), "launch", h.Launch, "code", r.Code, "reason", r.Message)
		writeLine(tc, welcome{Code: r.Code, Message: r.Message})
		tc.Close()
		return
	}
	if err := writeLine(tc, welcome{Cert: cert}); err != nil {
		tc.Close()
		return
	}
	c.SetDeadline(time.Time{})
	g.cfg.Log.Info("agent connected", "user", id.User, "launch", id.LaunchID, "job", id.JobID, "node", id.Node)
	g.park(&Link{Conn: tc, Identity: id})
}
