package agent_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

// serveEnv makes the test binary run an agent: WORKSPACE:STATEDIR:SOCKET.
const serveEnv = "OCTO_AGENT_TEST_SERVE"

func serveHelper(spec string) int {
	parts := strings.SplitN(spec, ":", 3)
	name, home, err := agent.CurrentUser()
	if err != nil || len(parts) != 3 {
		return 2
	}
	srv, err := agent.New(agent.Config{User: name, Home: home, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Workspace: parts[0], StateDir: parts[1]})
	if err != nil {
		os.Stderr.WriteString(err.Error())
		return 3
	}
	ln, err := net.Listen("unix", parts[2])
	if err != nil {
		return 4
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if srv.Run(ctx, ln) != nil {
		return 5
	}
	return 0
}

// startAgentProcess runs an agent in a child process and returns it with
// its socket, once it listens.
func startAgentProcess(t *testing.T, ws, state string) (*exec.Cmd, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), serveEnv+"="+ws+":"+state+":"+sock)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return cmd, sock
		}
		if time.Now().After(deadline) {
			t.Fatal("agent process never listened")
		}
	}
}

// kill -9 of the agent in the middle of an upload leaves the old file; the
// temporary file it leaves is removed when the next agent starts.
func TestUploadAgentKilled(t *testing.T) {
	ws, state := t.TempDir(), t.TempDir()
	target := filepath.Join(ws, "f")
	os.WriteFile(target, []byte("old"), 0o644)
	cmd, sock := startAgentProcess(t, ws, state)
	c := dialAs(t, sock, true)
	u, err := c.Create(ctxT(t), agentrpc.CreateRequest{Path: "f", FD: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.File.Write(make([]byte, 4<<20)); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	u.File.Write(make([]byte, 1<<20)) // the control plane may go on writing: nothing changes
	u.File.Close()
	if _, err := c.Commit(ctxT(t), agentrpc.CommitRequest{ID: u.ID, Size: 5 << 20}); err == nil {
		t.Error("commit succeeded on a killed agent")
	}
	if got, _ := os.ReadFile(target); string(got) != "old" {
		t.Errorf("target after the agent was killed: %.20q, want old", got)
	}
	if m := temps(t, ws); len(m) != 1 {
		t.Fatalf("temporary files after kill -9: %v, want the one left", m)
	}
	startAgentProcess(t, ws, state)
	if m := temps(t, ws); len(m) != 0 {
		t.Errorf("temporary files after the next start: %v, want none", m)
	}
	if got, _ := os.ReadFile(target); string(got) != "old" {
		t.Errorf("target after the next start: %.20q, want old", got)
	}
}

// A precondition on Remove is checked by the agent: a stale ETag removes
// nothing.
func TestRemoveIfMatch(t *testing.T) {
	ws := t.TempDir()
	c := dialAs(t, agenttest.Start(t, ws), true)
	os.WriteFile(filepath.Join(ws, "f"), []byte("v1"), 0o644)
	fi, err := c.Stat(ctxT(t), "f")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ws, "f.new"), []byte("v2"), 0o644)
	os.Rename(filepath.Join(ws, "f.new"), filepath.Join(ws, "f"))
	err = c.Remove(ctxT(t), agentrpc.RemoveRequest{Path: "f", IfMatch: fi.ETag()})
	wantCode(t, "remove with a stale ETag", err, agentrpc.CodePrecondition)
	fi, _ = c.Stat(ctxT(t), "f")
	if err := c.Remove(ctxT(t), agentrpc.RemoveRequest{Path: "f", IfMatch: fi.ETag()}); err != nil {
		t.Errorf("remove with the current ETag: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ws, "f")); !os.IsNotExist(err) {
		t.Errorf("file still there: %v", err)
	}
}
