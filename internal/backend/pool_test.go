package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"octo/internal/agent"
	"octo/internal/agentrpc"
	"octo/internal/config"
)

// TestMain doubles as a helper process: with OCTO_TEST_LISTEN set it only
// listens on that Unix socket (as whatever uid it was started with) and waits.
func TestMain(m *testing.M) {
	if path := os.Getenv("OCTO_TEST_LISTEN"); path != "" {
		ln, err := net.Listen("unix", path)
		if err != nil {
			os.Exit(3)
		}
		os.Chmod(path, 0o666)
		defer ln.Close()
		time.Sleep(time.Minute)
		return
	}
	os.Exit(m.Run())
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func me(t *testing.T) User {
	name, home, err := agent.CurrentUser()
	if err != nil {
		t.Fatal(err)
	}
	return User{Name: name, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Home: home}
}

// runAgent serves a real agent for u on sock until the returned stop is called.
func runAgent(t *testing.T, u User, sock string) (stop func()) {
	t.Helper()
	srv, err := agent.New(agent.Config{User: u.Name, UID: u.UID, GID: u.GID, Home: u.Home,
		Workspace: t.TempDir(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx, ln); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func localPool(t *testing.T, dir string) *Pool {
	r, err := NewRouter(RouterConfig{Mode: config.ModeLocal, Local: config.Local{SocketDir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(r, time.Second, quiet)
	t.Cleanup(p.Close)
	return p
}

func info(ctx context.Context, p *Pool, u User, safety Safety) (agentrpc.Info, Endpoint, error) {
	var in agentrpc.Info
	ep, err := p.Do(ctx, u, safety, func(c *agentrpc.Client) (err error) {
		in, err = c.Info(ctx)
		return err
	})
	return in, ep, err
}

func TestPoolReconnectsAfterAgentExit(t *testing.T) {
	dir := t.TempDir()
	u := me(t)
	sock := filepath.Join(dir, "agent-"+u.Name+".sock")
	p := localPool(t, dir)
	ctx := context.Background()

	stop := runAgent(t, u, sock)
	first, ep, err := info(ctx, p, u, Repeatable)
	if err != nil || ep.Placement != PlacementSystem || ep.Socket != sock {
		t.Fatalf("first call: %+v %v", ep, err)
	}
	stop()                             // the agent exits (as after its idle timeout) ...
	stop = runAgent(t, u, sock)        // ... and socket activation starts a new one
	time.Sleep(200 * time.Millisecond) // the client notices the closed connection

	second, _, err := info(ctx, p, u, Repeatable)
	if err != nil {
		t.Fatalf("call after the agent restarted: %v", err)
	}
	if !second.StartTime.After(first.StartTime) {
		t.Errorf("second call answered by the agent started at %v, want the new one (after %v)", second.StartTime, first.StartTime)
	}
	// A call that must not be repeated still goes through when the lost
	// connection was noticed before anything was sent.
	stop()
	runAgent(t, u, sock)
	time.Sleep(200 * time.Millisecond) // the client notices the closed connection
	var sess agentrpc.Session
	_, err = p.Do(ctx, u, Once, func(c *agentrpc.Client) (err error) {
		sess, err = c.Start(ctx, agentrpc.StartRequest{Argv: []string{"true"}})
		return err
	})
	if err != nil || sess.ID == "" {
		t.Errorf("Start after a restart: %+v %v", sess, err)
	}
}

func TestPoolDialErrors(t *testing.T) {
	dir := t.TempDir()
	u := me(t)
	p := localPool(t, dir)

	// A socket file nobody listens on: connection refused.
	refused := filepath.Join(dir, "agent-"+u.Name+".sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: refused, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	_, _, err = info(context.Background(), p, u, Repeatable)
	var be *Error
	if !errors.As(err, &be) || be.Code != CodeUnavailable || !strings.Contains(err.Error(), "refused the connection") {
		t.Errorf("refused socket: %v, want saying refused", err)
	}
	os.Remove(refused)

	// No socket: 503 with the fix.
	_, _, err = info(context.Background(), p, u, Repeatable)
	if !errors.As(err, &be) || be.Code != CodeUnavailable || !strings.Contains(err.Error(), "systemctl enable --now octo-agent@"+u.Name+".socket") {
		t.Errorf("missing socket: %v, want with the systemctl fix", err)
	}

	// A socket that accepts but never answers (a hung agent): 504 at the call timeout.
	hung, err := net.Listen("unix", refused)
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err = info(ctx, p, u, Repeatable)
	if !errors.As(err, &be) || be.Code != CodeTimeout {
		t.Errorf("hung agent: %v, want agent_timeout", err)
	}
}

// A socket is used only when the uid that listens on it is the one its
// placement requires: root for the system agent, the user for a user agent.
// A user serving a fake agent is refused as the system agent, and nobody
// else is accepted for anyone.
func TestPoolRefusesForeignSocket(t *testing.T) {
	if os.Getuid() != 0 {
		skip(t, "TestPoolRefusesForeignSocket: needs root to start a listener as uid 65534")
	}
	base, err := os.MkdirTemp("", "octo-pool-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	exe, _ := os.Executable()
	helper := filepath.Join(base, "helper")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(helper, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sockDir := filepath.Join(base, "s")
	os.Mkdir(sockDir, 0o777)
	os.Chmod(sockDir, 0o777)
	listenAs65534(t, helper, filepath.Join(sockDir, "agent-victim.sock"))
	listenAs65534(t, helper, filepath.Join(sockDir, "agent-nobody.sock"))
	listenAs65534(t, helper, filepath.Join(sockDir, "user-65534.sock"))
	// uid 4242's user socket leads to uid 65534's listener.
	if err := os.Symlink("user-65534.sock", filepath.Join(sockDir, "user-4242.sock")); err != nil {
		t.Fatal(err)
	}

	system := localPool(t, sockDir)
	r, err := NewRouter(RouterConfig{Mode: config.ModeLocal, Local: config.Local{SocketDir: filepath.Join(base, "none"),
		UserSocket: filepath.Join(sockDir, "user-{uid}.sock")}})
	if err != nil {
		t.Fatal(err)
	}
	user := NewPool(r, time.Second, quiet)
	defer user.Close()
	nobody := User{Name: "nobody", UID: 65534, GID: 65534}
	for _, tc := range []struct {
		name    string
		pool    *Pool
		u       User
		refused string // "": accepted
	}{
		{"another user's socket as the system agent", system, User{Name: "victim", UID: 4242, GID: 4242}, "owned by uid 65534, want 0 for the system placement"},
		{"the user's own socket as the system agent", system, nobody, "owned by uid 65534, want 0 for the system placement"},
		{"another user's socket as a user agent", user, User{Name: "victim", UID: 4242, GID: 4242}, "owned by uid 65534, want 4242 for the user placement"},
		{"the user's own socket as the user agent", user, nobody, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, _, err := info(ctx, tc.pool, tc.u, Repeatable)
			var be *Error
			if !errors.As(err, &be) {
				t.Fatalf("err = %v, want a *backend.Error", err)
			}
			if tc.refused == "" {
				// Accepted: the helper never answers, so the call times out.
				if be.Code != CodeTimeout {
					t.Errorf("err = %v, want the socket accepted (then %s, as the helper does not answer)", err, CodeTimeout)
				}
				return
			}
			if be.Code != CodeUnavailable || !strings.Contains(err.Error(), tc.refused) {
				t.Errorf("err = %v, want %s containing %q", err, CodeUnavailable, tc.refused)
			}
		})
	}
}

// listenAs65534 runs the test binary as uid 65534 listening on sock.
func listenAs65534(t *testing.T, helper, sock string) {
	t.Helper()
	cmd := exec.Command(helper)
	cmd.Env = append(os.Environ(), "OCTO_TEST_LISTEN="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ { // the file appears at bind(), connections work after listen()
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		if i > 500 {
			t.Fatal("helper did not listen")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// HugeAgent answers Agent.Info with a reply over agentrpc.MaxReplySize
// while Huge is set, as a hostile agent would.
type HugeAgent struct{ Huge *atomic.Bool }

func (a HugeAgent) Info(_ *agentrpc.Empty, r *agentrpc.Info) error {
	r.User = "me"
	if a.Huge.Load() {
		r.Home = strings.Repeat("x", agentrpc.MaxReplySize)
	}
	return nil
}

// A reply over the limit is 502 agent_failed, and the connection is
// dropped: the next call dials a new one.
func TestPoolRefusesHugeReply(t *testing.T) {
	dir := t.TempDir()
	u := me(t)
	var huge atomic.Bool
	accepted := serveFakeAgent(t, dir, u, "Agent", HugeAgent{&huge})
	p := localPool(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	huge.Store(true)
	_, _, err := info(ctx, p, u, Repeatable)
	var be *Error
	if !errors.As(err, &be) || be.Code != CodeFailed || !errors.Is(err, agentrpc.ErrBadReply) {
		t.Fatalf("huge reply: err = %v, want %s wrapping ErrBadReply", err, CodeFailed)
	}
	huge.Store(false)
	got, _, err := info(ctx, p, u, Repeatable)
	if err != nil || got.User != "me" {
		t.Fatalf("call after a huge reply: %+v %v, want a normal reply on a new connection", got, err)
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("connections made: %d, want 2 (the one that sent the huge reply closed)", n)
	}
}

// crashingAgent accepts connections, reads the request and closes the
// connection without answering, as an agent that crashes mid-call does.
func crashingAgent(t *testing.T, sock string) {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 4096))
			c.Close()
		}
	}()
}

// A call that may have reached the agent is not repeated when the
// connection dies under it (502 agent_failed); a read is retried once.
func TestPoolRetriesOnlySafeCalls(t *testing.T) {
	dir := t.TempDir()
	u := me(t)
	crashingAgent(t, filepath.Join(dir, "agent-"+u.Name+".sock"))
	p := localPool(t, dir)
	ctx := context.Background()
	for _, tc := range []struct {
		safety Safety
		calls  int
	}{{Once, 1}, {Repeatable, 2}} {
		calls := 0
		_, err := p.Do(ctx, u, tc.safety, func(c *agentrpc.Client) error {
			calls++
			_, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"true"}})
			return err
		})
		var be *Error
		if !errors.As(err, &be) || be.Code != CodeFailed {
			t.Errorf("safety %v: %v, want agent_failed", tc.safety, err)
		}
		if calls != tc.calls {
			t.Errorf("safety %v: call ran %d times, want %d", tc.safety, calls, tc.calls)
		}
	}
}

// Idle connections are closed so that an idle agent can exit; the next call
// dials again.
func TestPoolClosesIdleConnections(t *testing.T) {
	dir := t.TempDir()
	u := me(t)
	runAgent(t, u, filepath.Join(dir, "agent-"+u.Name+".sock"))
	p := localPool(t, dir)
	if _, _, err := info(context.Background(), p, u, Repeatable); err != nil {
		t.Fatal(err)
	}
	p.closeIdle(time.Hour)
	if n := len(p.conns); n != 1 {
		t.Errorf("closeIdle(1h) closed a connection used just now: %d left", n)
	}
	p.closeIdle(0)
	if n := len(p.conns); n != 0 {
		t.Errorf("closeIdle(0) left %d connections", n)
	}
	if _, _, err := info(context.Background(), p, u, Repeatable); err != nil {
		t.Errorf("call after the idle close: %v", err)
	}
}

// A user's dial gate lives only while a request of theirs dials or waits:
// the pool keeps nothing for the users it has merely seen.
func TestPoolForgetsDialGates(t *testing.T) {
	p := localPool(t, t.TempDir())
	base := me(t)
	var wg sync.WaitGroup
	for i := range 50 {
		u := base
		u.Name = fmt.Sprintf("%s-gate%d", base.Name, i%10) // 10 users, 5 requests each at once
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := info(context.Background(), p, u, Repeatable); err == nil {
				t.Errorf("%s: a call with no agent socket succeeded", u.Name)
			}
		}()
	}
	wg.Wait()
	p.mu.Lock()
	got := len(p.dialing)
	p.mu.Unlock()
	if got != 0 {
		t.Errorf("after every request ended the pool holds %d dial gates, want 0", got)
	}
}

// serveFakeAgent serves rcvr as the RPC service name on u's system agent
// socket in dir until the test ends, and counts the connections accepted.
func serveFakeAgent(t *testing.T, dir string, u User, name string, rcvr any) *atomic.Int32 {
	t.Helper()
	srv := rpc.NewServer()
	if err := srv.RegisterName(name, rcvr); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "agent-"+u.Name+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go agentrpc.ServeConn(srv, c)
		}
	}()
	return &accepted
}
