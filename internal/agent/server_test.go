package agent_test

import (
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

// helperEnv makes the test binary act as a client: it dials the socket
// named by the variable, calls Agent.Info and prints the outcome.
const helperEnv = "OCTO_AGENT_TEST_DIAL"

func TestMain(m *testing.M) {
	if sock := os.Getenv(helperEnv); sock != "" {
		c, err := agentrpc.Dial(context.Background(), "unix", sock)
		if err != nil {
			os.Stdout.WriteString("dial: " + err.Error())
			os.Exit(3)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = c.Info(ctx)
		if err != nil {
			os.Stdout.WriteString("info: " + err.Error())
			os.Exit(4)
		}
		os.Stdout.WriteString("info: ok")
		os.Exit(0)
	}
	if spec := os.Getenv(serveEnv); spec != "" {
		os.Exit(serveHelper(spec))
	}
	os.Exit(m.Run())
}

// syncBuffer is a log sink tests can read while the agent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPeerCheck connects as another uid and as the agent's own uid.
func TestPeerCheck(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("peer check test needs root to connect as another uid (CI=true: not skipping)")
		}
		t.Skip("peer check test: needs root to connect as another uid (nobody)")
	}
	dir := t.TempDir()
	// nobody must reach the socket and run a copy of this test binary.
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o755)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper.test")
	copyFile(t, self, bin)

	var logs syncBuffer
	sock, _ := agenttest.StartServer(t, agent.Config{
		Workspace: filepath.Join(dir, "ws"), StateDir: filepath.Join(dir, "state"),
		AllowUIDs: []uint32{4242},
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	})
	os.Chmod(filepath.Dir(sock), 0o755)
	os.Chmod(sock, 0o777) // only the peer check stands in the way

	tests := []struct {
		name     string
		uid, gid uint32
		wantOK   bool
	}{
		{"nobody", 65534, 65534, false},
		{"nobody in root's group", 65534, 0, false},
		{"allowed uid", 4242, 4242, true},
		{"root", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin)
			cmd.Env = []string{helperEnv + "=" + sock}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tt.uid, Gid: tt.gid}}
			out, err := cmd.Output()
			got := string(out)
			if tt.wantOK {
				if err != nil || got != "info: ok" {
					t.Errorf("uid %d: %q, %v; want an answer", tt.uid, got, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(got, "info: agent connection lost") {
				t.Errorf("uid %d: %q, %v; want the connection closed without an answer", tt.uid, got, err)
			}
			wantLog := fmt.Sprintf(`msg="peer denied" pid=%d uid=%d gid=%d`, cmd.Process.Pid, tt.uid, tt.gid)
			if !strings.Contains(logs.String(), wantLog) {
				t.Errorf("log %q lacks %q", logs.String(), wantLog)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// runServer runs a server on a fresh socket and returns a client and a
// function that stops it and returns Run's result.
func runServer(t *testing.T, cfg agent.Config) (*agentrpc.Client, func() error) {
	t.Helper()
	srv, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	c := dial(t, sock)
	return c, func() error {
		cancel()
		c.Close()
		return <-done
	}
}

func testConfig(t *testing.T) agent.Config {
	name, home, err := agent.CurrentUser()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return agent.Config{User: name, Home: home, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Workspace: dir, StateDir: filepath.Join(dir, ".state")}
}

func TestPersistAcrossRestart(t *testing.T) {
	cfg := testConfig(t)
	c, stop := runServer(t, cfg)
	ctx := ctxT(t)
	done, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", "echo persisted; exit 3"}, Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	waitEnd(t, c, done.ID)
	running, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil on cancel", err)
	}
	if alive(running.PID) {
		t.Errorf("session process %d still runs after the agent stopped", running.PID)
	}

	c2, stop2 := runServer(t, cfg)
	defer stop2()
	list, err := c2.Sessions(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Sessions after restart = %+v, %v; want 2", list, err)
	}
	if s := list[0]; s.ID != done.ID || s.Name != "first" || s.State != agentrpc.StateExited || s.ExitCode != 3 || s.OutputSize != 10 {
		t.Errorf("first session after restart = %+v, want exit 3 with 10 bytes of output", s)
	}
	if s := list[1]; s.ID != running.ID || s.State != agentrpc.StateExited || s.Signal != "TERM" {
		t.Errorf("session running at shutdown = %+v, want exited by TERM", s)
	}
	o, err := c2.ReadOutput(ctx, agentrpc.OutputRequest{ID: done.ID})
	if err != nil || string(o.Data) != "persisted\n" || !o.Done {
		t.Errorf("output after restart = %+v, %v; want \"persisted\\n\", done", o, err)
	}
}

func TestIdleExit(t *testing.T) {
	cfg := testConfig(t)
	cfg.IdleTimeout = 200 * time.Millisecond
	srv, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background(), ln) }()

	// A running session keeps the agent alive after the client leaves.
	c, err := agentrpc.Dial(ctxT(t), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Start(ctxT(t), agentrpc.StartRequest{Argv: []string{"sleep", "0.8"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	start := time.Now()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v after %v while session %s ran", err, time.Since(start), s.ID)
	case <-time.After(600 * time.Millisecond):
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil on idle exit", err)
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("idle exit after %v, want after the session (0.8s) plus the idle timeout", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit when idle")
	}
}

func TestNewErrors(t *testing.T) {
	base := testConfig(t)
	tests := []struct {
		name string
		edit func(*agent.Config)
	}{
		{"no user", func(c *agent.Config) { c.User = "" }},
		{"relative workspace", func(c *agent.Config) { c.Workspace = "ws" }},
		{"missing workspace", func(c *agent.Config) { c.Workspace = "/nonexistent/octo" }},
		{"no state dir", func(c *agent.Config) { c.StateDir = "" }},
	}
	for _, tt := range tests {
		cfg := base
		tt.edit(&cfg)
		if _, err := agent.New(cfg); err == nil {
			t.Errorf("%s: New succeeded, want an error", tt.name)
		}
	}
}

func TestPruneFinished(t *testing.T) {
	cfg := testConfig(t)
	cfg.KeepSessions = 3
	c, stop := runServer(t, cfg)
	ctx := ctxT(t)
	var ids []string
	for i := range 5 {
		s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"echo", strconv.Itoa(i)}})
		if err != nil {
			t.Fatal(err)
		}
		waitEnd(t, c, s.ID)
		ids = append(ids, s.ID)
	}
	check := func(c *agentrpc.Client, when string) {
		// Pruning follows a session's end shortly; wait for it.
		var list []agentrpc.Session
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var err error
			if list, err = c.Sessions(ctx); err != nil {
				t.Fatal(err)
			}
			if len(list) <= 3 || time.Now().After(deadline) {
				break
			}
		}
		var got []string
		for _, s := range list {
			got = append(got, s.ID)
		}
		if want := ids[2:]; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: sessions %v, want the newest three %v", when, got, want)
		}
		files, _ := os.ReadDir(filepath.Join(cfg.StateDir, "sessions"))
		if len(files) != 6 {
			t.Errorf("%s: state dir holds %d files, want 6 (3 records, 3 outputs)", when, len(files))
		}
	}
	check(c, "running")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c2, stop2 := runServer(t, cfg)
	defer stop2()
	check(c2, "after restart")
}

// TestShutdownDuringStop cancels the agent while a Stop with a long grace
// waits on a session that ignores SIGTERM: Run still returns promptly and
// the session is killed.
func TestShutdownDuringStop(t *testing.T) {
	c, stop := runServer(t, testConfig(t))
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
		_, err := c.Stop(ctx, agentrpc.StopRequest{ID: s.ID, Grace: 4 * time.Minute})
		stopped <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second || d < 2*time.Second {
		t.Errorf("Run took %v to return during a Stop, want the shutdown grace (3s) for a session ignoring SIGTERM", d)
	}
	t.Logf("Run returned %v after cancel", time.Since(start))
	if alive(s.PID) {
		t.Errorf("session %d survived the agent's shutdown", s.PID)
		syscall.Kill(-s.PID, syscall.SIGKILL)
	}
	<-stopped
}

// TestInternalError removes a finished session's output file behind the
// agent's back: reading it is the agent's own failure, code internal.
func TestInternalError(t *testing.T) {
	cfg := testConfig(t)
	c, stop := runServer(t, cfg)
	defer stop()
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"echo", "gone"}})
	if err != nil {
		t.Fatal(err)
	}
	waitEnd(t, c, s.ID)
	if err := os.Remove(filepath.Join(cfg.StateDir, "sessions", s.ID+".out")); err != nil {
		t.Fatal(err)
	}
	_, err = c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID})
	wantCode(t, "output file removed", err, agentrpc.CodeInternal)
	if strings.Contains(err.Error(), cfg.StateDir) {
		t.Errorf("error %q shows the state dir path", err)
	}
}

// TestStateDirLocked refuses a second agent on a state dir in use, naming
// the holder's pid (written over a longer stale line the lock file held),
// and allows it once the first has stopped.
func TestStateDirLocked(t *testing.T) {
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := strings.Repeat("9", 40) + "\n"
	if err := os.WriteFile(filepath.Join(cfg.StateDir, "lock"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stop := runServer(t, cfg)
	_, err := agent.New(cfg)
	if want := fmt.Sprintf("(pid %d)", os.Getpid()); !errors.Is(err, agent.ErrStateDirInUse) || !strings.Contains(err.Error(), want) {
		t.Errorf("second New on the same state dir = %v, want ErrStateDirInUse naming %s", err, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, stop2 := runServer(t, cfg)
	stop2()
}

// A client speaking net/rpc's stock gob protocol (or an older octo) is
// refused with one log line saying why; the agent serves the next client.
func TestAgentRefusesOtherProtocol(t *testing.T) {
	logs := &syncBuffer{}
	sock, _ := agenttest.StartServer(t, agent.Config{Workspace: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	gc, err := rpc.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	call := gc.Go(agentrpc.MethodInfo, &agentrpc.Empty{}, new(agentrpc.Info), nil)
	select {
	case <-call.Done:
		if call.Error == nil {
			t.Fatal("gob client: Agent.Info succeeded, want the connection refused")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gob client: no answer in 10s, want the connection closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "does not speak this agent's protocol") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line about the protocol; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := dial(t, sock)
	if _, err := c.Info(ctxT(t)); err != nil {
		t.Fatalf("octo client after the refusal: %v", err)
	}
}
