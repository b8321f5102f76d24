package agent_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

// fakeReloader refuses to run a new binary, the way a failed exec does.
type fakeReloader struct {
	prepareErr error

	mu       sync.Mutex
	handed   *agent.Handover
	sessions int
	resumed  int
}

func (f *fakeReloader) Prepare() error { return f.prepareErr }

func (f *fakeReloader) Exec(h *agent.Handover) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handed, f.sessions = h, len(h.Sessions.Sessions)
	return errors.New("exec refused by the test")
}

func (f *fakeReloader) Resumed(error) {
	f.mu.Lock()
	f.resumed++
	f.mu.Unlock()
}

// reload starts reload token on sock and waits for its outcome, dialing
// again whenever the hand-over closed the connection.
func reload(t *testing.T, sock, token string) agentrpc.ReloadReply {
	t.Helper()
	req := agentrpc.ReloadRequest{Token: token}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := dial(t, sock)
		var reply agentrpc.ReloadReply
		for {
			err := c.Call(ctxT(t), agentrpc.MethodReload, &req, &reply)
			if errors.Is(err, agentrpc.ErrConnLost) || errors.Is(err, agentrpc.ErrReloading) {
				break
			}
			if err != nil {
				t.Fatalf("reload %s: %v", token, err)
			}
			if reply.Done {
				return reply
			}
			req.Wait = true
			if time.Now().After(deadline) {
				t.Fatalf("reload %s: no outcome after 20s", token)
			}
			time.Sleep(5 * time.Millisecond)
		}
		c.Close()
	}
}

// TestReloadFailureKeepsServing: when the new binary cannot take over
// (Prepare or Exec fails), the reload's outcome says why and the agent
// serves on with its sessions, output unbroken.
func TestReloadFailureKeepsServing(t *testing.T) {
	cfg := testConfig(t)
	fake := &fakeReloader{}
	cfg.Reloader = fake
	sock, _ := agenttest.StartServer(t, cfg)
	c := dial(t, sock)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", `i=0; while :; do i=$((i+1)); echo $i; sleep 0.002; done`}})
	if err != nil {
		t.Fatal(err)
	}
	if got := reload(t, sock, "first"); got.Error != "exec refused by the test" {
		t.Errorf("reload outcome %+v, want the exec's error", got)
	}
	fake.mu.Lock()
	if fake.sessions != 1 || fake.handed.Listener == nil || fake.handed.Lock == nil || fake.handed.Token != "first" || fake.resumed != 1 {
		t.Errorf("Exec got %d sessions, handover %+v, resumed %d; want 1 session, listener, lock, token first, resumed once", fake.sessions, fake.handed, fake.resumed)
	}
	fake.mu.Unlock()

	fake.prepareErr = errors.New("new binary refused by the test")
	if got := reload(t, sock, "second"); got.Error != "new binary refused by the test" {
		t.Errorf("reload outcome %+v, want Prepare's error", got)
	}
	c = dial(t, sock)
	var out []byte
	for off := int64(0); !strings.Contains(string(out), "\n500\n"); {
		o, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Offset: off, Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out, off = append(out, o.Data...), o.Next
	}
	for i, l := range strings.Split(string(out[:strings.LastIndexByte(string(out), '\n')]), "\n") {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("counter line %d is %q across two failed reloads", i+1, l)
		}
	}
	if info, err := c.Info(ctx); err != nil || info.RunningSessions != 1 {
		t.Errorf("Info after failed reloads = %+v, %v; want 1 running session", info, err)
	}

	var reply agentrpc.ReloadReply
	wantCode(t, "bad token", c.Call(ctx, agentrpc.MethodReload, &agentrpc.ReloadRequest{Token: "../x"}, &reply), agentrpc.CodeInvalid)
	wantCode(t, "unknown token", c.Call(ctx, agentrpc.MethodReload, &agentrpc.ReloadRequest{Token: "never", Wait: true}, &reply), agentrpc.CodeNotFound)
}

// TestReloadRefusedWithoutReloader: an agent not run by octo-agent serve
// (octo dev, tests) cannot reload.
func TestReloadRefusedWithoutReloader(t *testing.T) {
	c, _ := newClient(t)
	var reply agentrpc.ReloadReply
	wantCode(t, "reload", c.Call(ctxT(t), agentrpc.MethodReload, &agentrpc.ReloadRequest{Token: "t"}, &reply), agentrpc.CodeInvalid)
}

// TestReloadOnlyRootAndUser: a peer the agent serves (AllowUIDs, like the
// control plane) may not reload it.
func TestReloadOnlyRootAndUser(t *testing.T) {
	needRoot(t, "connecting as another uid")
	cfg := testConfig(t)
	cfg.AllowUIDs = []uint32{65534}
	cfg.Reloader = &fakeReloader{}
	sock, _ := agenttest.StartServer(t, cfg)
	for _, p := range []string{filepath.Dir(filepath.Dir(sock)), filepath.Dir(sock), sock} {
		os.Chmod(p, 0o777) // reachable by uid 65534: the agent's own check decides
	}
	nc, err := dialAsUID(sock, 65534)
	if err != nil {
		t.Fatal(err)
	}
	c := agentrpc.NewClient(nc)
	defer c.Close()
	if _, err := c.Info(ctxT(t)); err != nil {
		t.Fatalf("Info as an allowed uid: %v", err)
	}
	var reply agentrpc.ReloadReply
	wantCode(t, "reload as an allowed uid", c.Call(ctxT(t), agentrpc.MethodReload, &agentrpc.ReloadRequest{Token: "t"}, &reply), agentrpc.CodePermission)
}

// dialAsUID connects to sock from a thread running as uid (the peer
// credentials are the connecting thread's); the thread is left behind.
func dialAsUID(sock string, uid int) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			res <- result{nil, e}
			return
		}
		c, err := net.Dial("unix", sock)
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}

// TestReloadRepeatsStop: a Stop waiting out its grace when a reload starts
// fails with code reloading (so that octo repeats it with the next binary)
// rather than answering with a session still running; repeated, it ends
// the session.
func TestReloadRepeatsStop(t *testing.T) {
	cfg := testConfig(t)
	cfg.Reloader = &fakeReloader{}
	sock, _ := agenttest.StartServer(t, cfg)
	c := dial(t, sock)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", `trap "" TERM; echo ready; while :; do sleep 0.05; done`}})
	if err != nil {
		t.Fatal(err)
	}
	if o, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Wait: 10 * time.Second}); err != nil || string(o.Data) != "ready\n" {
		t.Fatalf("output %q, %v; want ready", o.Data, err)
	}
	stopped := make(chan error, 1)
	go func() {
		_, err := c.Stop(ctx, agentrpc.StopRequest{ID: s.ID, Grace: 2 * time.Second})
		stopped <- err
	}()
	time.Sleep(200 * time.Millisecond)
	reload(t, sock, "during")
	wantCode(t, "stop cut short by a reload", <-stopped, agentrpc.CodeReloading)
	got, err := dial(t, sock).Stop(ctx, agentrpc.StopRequest{ID: s.ID, Grace: 200 * time.Millisecond})
	if err != nil || got.State != agentrpc.StateExited || got.Signal != "KILL" {
		t.Errorf("repeated stop = %+v, %v; want exited by KILL", got, err)
	}
}
