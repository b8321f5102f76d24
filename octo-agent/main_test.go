package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "octo-agent-test")
	if err != nil {
		panic(err)
	}
	agentBin = filepath.Join(dir, "octo-agent")
	if out, err := exec.Command("go", "build", "-o", agentBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build octo-agent: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agentProc is a running octo-agent binary.
type agentProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

// startAgent runs octo-agent with args. With ln, it passes ln's socket the
// way systemd does: fd 3, LISTEN_FDS=1 and LISTEN_PID set to the agent's
// own pid by a re-exec through sh (exec keeps the pid).
func startAgent(t *testing.T, ln *net.UnixListener, env []string, args ...string) *agentProc {
	t.Helper()
	return startAgentAs(t, nil, ln, env, args...)
}

// startAgentAs is startAgent with the agent running as cred (nil: as the test).
func startAgentAs(t *testing.T, cred *syscall.Credential, ln *net.UnixListener, env []string, args ...string) *agentProc {
	t.Helper()
	cmd := exec.Command(agentBin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	if ln != nil {
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd = exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, agentBin}, args...)...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LISTEN_FDS=1"}, env...)
		cmd.ExtraFiles = []*os.File{f}
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	p := &agentProc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait returns the agent's exit error, failing the test after d.
func (p *agentProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("octo-agent still runs after %v; stderr:\n%s", d, p.stderr)
		return nil
	}
}

// notifyListener receives sd_notify messages.
func notifyListener(t *testing.T, dir string) (path string, msgs <-chan string) {
	path = filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

func expectMsg(t *testing.T, msgs <-chan string, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			if m == want {
				return
			}
		case <-deadline:
			t.Fatalf("no %q notification within 10s", want)
		}
	}
}

func dialAgent(t *testing.T, sock string) *agentrpc.Client {
	t.Helper()
	var c *agentrpc.Client
	var err error
	for range 200 { // the agent may still be starting
		if c, err = agentrpc.Dial(context.Background(), "unix", sock); err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("dial %s: %v", sock, err)
	return nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIdleExitAndSocketMode(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	tests := []struct {
		args []string
		mode os.FileMode
	}{
		{nil, 0o600},
		{[]string{"--socket-mode", "0660"}, 0o660},
	}
	for _, tt := range tests {
		args := append([]string{"serve", "--socket", sock, "--workspace", dir, "--state-dir", filepath.Join(dir, "state"), "--idle-timeout", "300ms"}, tt.args...)
		p := startAgent(t, nil, []string{"HOME=" + dir}, args...)
		c := dialAgent(t, sock)
		if _, err := c.Info(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != tt.mode {
			t.Errorf("socket mode = %v, %v; want %v", st.Mode().Perm(), err, tt.mode)
		}
		c.Close()
		start := time.Now()
		if err := p.wait(t, 10*time.Second); err != nil {
			t.Fatalf("idle exit = %v, want status 0; stderr:\n%s", err, p.stderr)
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("exited %v after the last connection closed, want >= 300ms", d)
		}
		if !strings.Contains(p.stderr.String(), "agent idle, exiting") {
			t.Errorf("stderr lacks the idle exit line:\n%s", p.stderr)
		}
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left after exit: %v", err)
		}
	}
}

func TestBindRefusals(t *testing.T) {
	dir := t.TempDir()
	base := []string{"serve", "--workspace", dir, "--state-dir", filepath.Join(dir, "state")}

	// A stale socket (nothing answers) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	sl, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	sl.SetUnlinkOnClose(false)
	sl.Close()
	p := startAgent(t, nil, nil, append(base, "--socket", stale, "--idle-timeout", "0")...)
	c := dialAgent(t, stale)
	if _, err := c.Info(ctxT(t)); err != nil {
		t.Errorf("agent on a stale socket: %v", err)
	}
	c.Close()

	// A live agent or a non-socket file is refused.
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("keep me"), 0o644)
	tests := []struct {
		path, want string
	}{
		{stale, "another server is listening"},
		{regular, "not a socket"},
	}
	for _, tt := range tests {
		q := startAgent(t, nil, nil, "serve", "--workspace", dir, "--state-dir", filepath.Join(dir, "state-probe"), "--socket", tt.path)
		err := q.wait(t, 10*time.Second)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(q.stderr.String(), tt.want) {
			t.Errorf("agent on %s: %v, stderr %q; want exit 1 saying %q", tt.path, err, q.stderr, tt.want)
		}
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep me" {
		t.Errorf("regular file changed to %q", b)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Errorf("agent exit on SIGTERM = %v, want 0", err)
	}
}

func TestStartupErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		want     string
	}{
		{"unknown allow-user", []string{"--allow-user", "no-such-user-octo"}, nil, 1, "no-such-user-octo"},
		{"bad output cap", []string{"--output-cap", "lots"}, nil, 2, "invalid size"},
		{"bad output budget", []string{"--output-budget", "lots"}, nil, 2, "invalid size"},
		{"bad socket mode", []string{"--socket-mode", "999"}, nil, 2, "octal"},
		{"relative workspace", []string{"--workspace", "ws"}, nil, 2, "absolute"},
		{"extra argument", []string{"extra"}, nil, 2, "unexpected argument"},
		{"missing workspace", []string{"--workspace", filepath.Join(dir, "nope")}, nil, 1, "open workspace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"serve", "--socket", filepath.Join(dir, "s.sock"), "--state-dir", filepath.Join(dir, "state")}, tt.args...)
			p := startAgent(t, nil, append([]string{"HOME=" + dir}, tt.env...), args...)
			err := p.wait(t, 10*time.Second)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tt.wantCode || !strings.Contains(p.stderr.String(), tt.want) {
				t.Errorf("%v: %v, stderr %q; want exit %d saying %q", tt.args, err, p.stderr, tt.wantCode, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(agentBin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "octo-agent ") {
		t.Errorf("version = %q, %v", out, err)
	}
}

// TestDialRunsOctoAgentDial: `octo-agent dial`, the Slurm agent's former
// command, runs octo-agent-dial from beside the binary with the same
// arguments; without it, it fails saying what to install and configure.
func TestDialRunsOctoAgentDial(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "octo-agent")
	install(t, agentBin, bin)
	dial := filepath.Join(dir, "octo-agent-dial")
	if err := os.WriteFile(dial, []byte("#!/bin/sh\necho \"$0 $*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "dial", "--idle-timeout", "3s").CombinedOutput()
	if want := dial + " --idle-timeout 3s\n"; err != nil || string(out) != want {
		t.Errorf("octo-agent dial: %q, %v; want %q", out, err, want)
	}
	os.Remove(dial)
	out, err = exec.Command(bin, "dial").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "slurm.agent_command") {
		t.Errorf("octo-agent dial without octo-agent-dial: %v, %q; want exit 1 naming slurm.agent_command", err, out)
	}
}

func needRoot(t *testing.T, why string) {
	if os.Getuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: needs root (CI=true: not skipping)", why)
	}
	t.Skipf("%s: needs root", why)
}

// TestNoPasswdEntry runs the agent as a uid without a passwd entry, as in
// a minimal container: name and home come from the environment.
func TestNoPasswdEntry(t *testing.T) {
	needRoot(t, "running the agent as a uid without a passwd entry")
	const uid = 54321
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o700)
	os.Chown(home, uid, uid)
	sock := filepath.Join(home, "agent.sock")
	cred := &syscall.Credential{Uid: uid, Gid: uid}

	p := startAgentAs(t, cred, nil, []string{"USER=ghost", "HOME=" + home}, "serve", "--socket", sock)
	c := dialAgent(t, sock)
	info, err := c.Info(ctxT(t))
	if err != nil {
		t.Fatalf("Info: %v; stderr:\n%s", err, p.stderr)
	}
	if info.User != "ghost" || info.Home != home || info.Workspace != home || info.UID != uid {
		t.Errorf("Info = %+v, want user ghost, home and workspace %s, uid %d", info, home, uid)
	}
	if st, err := os.Stat(filepath.Join(home, ".local", "state", "octo-agent", "sessions")); err != nil || st.Sys().(*syscall.Stat_t).Uid != uid {
		t.Errorf("default state dir under $HOME: %v", err)
	}

	q := startAgentAs(t, cred, nil, []string{"HOME=" + home}, "serve", "--socket", filepath.Join(home, "b.sock"))
	err = q.wait(t, 10*time.Second)
	if err == nil || !strings.Contains(q.stderr.String(), "no passwd entry") {
		t.Errorf("without $USER: %v, stderr %q; want a failure naming the missing passwd entry", err, q.stderr)
	}
	r := startAgentAs(t, cred, nil, []string{"HOME=" + home}, "serve", "--user", "flagged", "--socket", filepath.Join(home, "c.sock"), "--state-dir", filepath.Join(home, "state-c"))
	if info, err := dialAgent(t, filepath.Join(home, "c.sock")).Info(ctxT(t)); err != nil || info.User != "flagged" {
		t.Errorf("--user flagged: %+v, %v; stderr:\n%s", info, err, r.stderr)
	}
}

// TestCrashMarksLost kills the agent while a session runs: the next agent
// reports that session lost and the finished one unchanged.
func TestCrashMarksLost(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	args := []string{"serve", "--socket", sock, "--workspace", dir, "--state-dir", filepath.Join(dir, "state")}
	p := startAgent(t, nil, nil, args...)
	c := dialAgent(t, sock)
	ctx := ctxT(t)
	done, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", "exit 5"}})
	if err != nil {
		t.Fatal(err)
	}
	for s := done; s.State == agentrpc.StateRunning; s, _ = c.Session(ctx, done.ID) {
		time.Sleep(5 * time.Millisecond)
	}
	run, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-run.PID, syscall.SIGKILL)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)

	startAgent(t, nil, nil, args...) // the dead agent's socket is stale now
	list, err := dialAgent(t, sock).Sessions(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Sessions = %+v, %v; want 2", list, err)
	}
	if s := list[0]; s.State != agentrpc.StateExited || s.ExitCode != 5 {
		t.Errorf("finished session = %+v, want exited 5", s)
	}
	if s := list[1]; s.State != agentrpc.StateLost || !strings.Contains(s.Error, "still runs") || s.EndTime.IsZero() {
		t.Errorf("running session = %+v, want lost, saying its process still runs", s)
	}
}

func TestStateDirInUse(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	startAgent(t, nil, nil, "serve", "--socket", filepath.Join(dir, "a.sock"), "--workspace", dir, "--state-dir", state)
	dialAgent(t, filepath.Join(dir, "a.sock")) // the first agent is up
	q := startAgent(t, nil, nil, "serve", "--socket", filepath.Join(dir, "b.sock"), "--workspace", dir, "--state-dir", state)
	err := q.wait(t, 10*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(q.stderr.String(), "state dir in use by another agent") {
		t.Errorf("second agent on the state dir: %v, stderr %q; want exit 1 saying it is in use", err, q.stderr)
	}
}

func TestProcs(t *testing.T) {
	tests := []struct {
		env     string
		wantN   int
		wantSet bool
	}{
		{"", 1, true},   // the agent's default
		{"4", 0, false}, // the operator's choice stands
		{"1", 0, false},
	}
	for _, tt := range tests {
		n, set := procs(func(k string) string {
			if k == "GOMAXPROCS" {
				return tt.env
			}
			return ""
		})
		if n != tt.wantN || set != tt.wantSet {
			t.Errorf("procs with GOMAXPROCS=%q: got %d, %v; want %d, %v", tt.env, n, set, tt.wantN, tt.wantSet)
		}
	}
}
