package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// TestIdleExitAtAccept connects just as the idle timeout fires: the agent
// must serve the connection it accepted (and exit idle later), not close
// it under its first call.
func TestIdleExitAtAccept(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{User: "u", UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Home: dir,
		StateDir: filepath.Join(dir, ".state"), IdleTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dialed := make(chan *agentrpc.Client, 1)
	fired := 0 // only the Run goroutine touches it
	testHookIdle = func() {
		fired++
		if fired > 1 {
			return
		}
		// Connect and wait until the agent has accepted it, all after the
		// timeout fired and before the agent decides.
		c, err := agentrpc.Dial(ctx, "unix", sock)
		if err != nil {
			t.Error(err)
			close(dialed)
			return
		}
		for srv.idle.idleNow() && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		dialed <- c
	}
	defer func() { testHookIdle = nil }()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()

	var c *agentrpc.Client
	select {
	case c = <-dialed:
	case err := <-done:
		t.Fatalf("agent exited (%v) before the hook connected", err)
	case <-ctx.Done():
		t.Fatal("idle timeout never fired")
	}
	if c == nil {
		t.FailNow()
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info on a connection accepted as the idle timeout fired: %v", err)
	}
	if info.PID != os.Getpid() {
		t.Errorf("Info pid = %d, want %d", info.PID, os.Getpid())
	}
	c.Close()
	select {
	case err = <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil (idle exit)", err)
		}
	case <-ctx.Done():
		t.Fatal("agent did not exit idle after the connection closed")
	}
	// How often the timeout fired is not asserted: when this goroutine
	// closes the connection before the agent decides, the first firing may
	// already find it idle again, and exiting then is right.
}
