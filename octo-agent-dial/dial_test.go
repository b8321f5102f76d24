package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"octo/internal/agent"
	"octo/internal/slurm"
)

func TestDialerFromEnv(t *testing.T) {
	full := map[string]string{slurm.EnvGateway: "head:3443", slurm.EnvLaunch: "L1",
		slurm.EnvToken: "tok", slurm.EnvCASHA256: "ab12"}
	d, err := dialerFromEnv(func(k string) string { return full[k] })
	if err != nil {
		t.Fatal(err)
	}
	if d.Addr != "head:3443" || d.LaunchID != "L1" || d.Token != "tok" || d.CASHA256 != "ab12" || d.Munge == nil {
		t.Errorf("dialer = %+v, want the environment's values and a MUNGE source", d)
	}
	for name := range full {
		_, err := dialerFromEnv(func(k string) string {
			if k == name {
				return ""
			}
			return full[k]
		})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without $%s: %v, want an error naming it", name, err)
		}
	}
}

// TestNewWhenFree: a placed agent waits while another agent holds its
// state dir, starts once it is free, and gives up after the wait.
func TestNewWhenFree(t *testing.T) {
	name, home, err := agent.CurrentUser()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := agent.Config{User: name, Home: home, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Workspace: dir, StateDir: filepath.Join(dir, "state")}
	holder, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if _, err := newWhenFree(context.Background(), cfg, 300*time.Millisecond, log); !errors.Is(err, agent.ErrStateDirInUse) {
		t.Fatalf("state dir held throughout: %v, want ErrStateDirInUse", err)
	}
	// The holder stops (Run with an ended context) while the next waits.
	ln, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		holder.Run(ctx, ln)
	}()
	srv, err := newWhenFree(context.Background(), cfg, 10*time.Second, log)
	if err != nil {
		t.Fatalf("state dir freed while waiting: %v, want a server", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ln2, _ := net.Listen("unix", filepath.Join(dir, "s2.sock"))
	srv.Run(ctx, ln2)
}
