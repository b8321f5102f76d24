package agent_test

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// TestStopReusedGroup: once a session's leader is gone, Stop must not
// signal a process group that reused its id. ns_last_pid makes the next
// process get the old session's pid, as a reviewer did to reproduce it.
func TestStopReusedGroup(t *testing.T) {
	needRoot(t, "writing /proc/sys/kernel/ns_last_pid")
	c, _ := newClient(t)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	waitEnd(t, c, s.ID)

	// Start "sleep 300" in its own group with the old session's pid.
	var cmd *exec.Cmd
	for try := 0; ; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(s.PID-1)), 0); err != nil {
			t.Fatalf("ns_last_pid: %v", err)
		}
		cmd = exec.Command("sleep", "300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == s.PID {
			break
		}
		cmd.Process.Kill()
		cmd.Wait()
		if try == 50 {
			t.Fatalf("could not get pid %d again in 50 tries (last %d)", s.PID, cmd.Process.Pid)
		}
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	if _, err := c.Stop(ctx, agentrpc.StopRequest{ID: s.ID, Grace: time.Second}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "signal ended session", c.Signal(ctx, s.ID, "TERM"), agentrpc.CodeNotRunning)
	time.Sleep(50 * time.Millisecond)
	if !alive(cmd.Process.Pid) {
		t.Errorf("Stop of ended session %s killed process group %d that reused its pid", s.ID, s.PID)
	}
}
