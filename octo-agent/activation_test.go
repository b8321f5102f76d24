package main

import (
	"bytes"
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

func TestSocketActivation(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	notify, msgs := notifyListener(t, dir)
	ws := filepath.Join(dir, "ws")
	os.Mkdir(ws, 0o755)
	env := []string{"NOTIFY_SOCKET=" + notify, "WATCHDOG_USEC=200000", "STATE_DIRECTORY=" + filepath.Join(dir, "state")}
	args := []string{"serve", "--workspace", ws, "--idle-timeout", "0"}

	p := startAgent(t, ln, env, args...)
	expectMsg(t, msgs, "READY=1")
	expectMsg(t, msgs, "WATCHDOG=1")
	c := dialAgent(t, sock)
	info, err := c.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.PID != p.cmd.Process.Pid || info.Workspace != ws {
		t.Errorf("Info = %+v, want pid %d and workspace %s", info, p.cmd.Process.Pid, ws)
	}
	s, err := c.Start(ctxT(t), agentrpc.StartRequest{Argv: []string{"echo", "from the first agent"}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		o, err := c.ReadOutput(ctxT(t), agentrpc.OutputRequest{ID: s.ID, Wait: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if o.Done {
			break
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("agent exit on SIGTERM = %v, want 0; stderr:\n%s", err, p.stderr)
	}
	expectMsg(t, msgs, "STOPPING=1")

	// The next agent on the same socket sees the earlier session.
	startAgent(t, ln, env, args...)
	c2 := dialAgent(t, sock)
	o, err := c2.ReadOutput(ctxT(t), agentrpc.OutputRequest{ID: s.ID})
	if err != nil || string(o.Data) != "from the first agent\n" || !o.Done {
		t.Errorf("second agent's output of the first session = %+v, %v", o, err)
	}
}

// TestSystemdSocketActivate lets systemd's own tool pass the socket: the
// first connection starts the agent, which answers on it.
func TestSystemdSocketActivate(t *testing.T) {
	tool, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-socket-activate not found (CI=true: not skipping)")
		}
		t.Skip("socket activation through systemd: needs systemd-socket-activate (apt install systemd)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(tool, "-l", sock, agentBin, "serve", "--workspace", dir, "--state-dir", filepath.Join(dir, "state"), "--idle-timeout", "300ms")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	c := dialAgent(t, sock)
	info, err := c.Info(ctxT(t))
	if err != nil {
		t.Fatalf("Info: %v; stderr:\n%s", err, &stderr)
	}
	if info.Workspace != dir {
		t.Errorf("Info = %+v, want workspace %s", info, dir)
	}
	c.Close()
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("agent exit = %v, want 0; stderr:\n%s", err, &stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("agent did not exit when idle; stderr:\n%s", &stderr)
	}
	if !strings.Contains(stderr.String(), "agent idle, exiting") {
		t.Errorf("stderr lacks the idle exit:\n%s", &stderr)
	}
}
