// Package agenttest runs a real octo agent in-process for tests of other packages.
package agenttest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"octo/internal/agent"
)

// Start runs an in-process agent for the current user over a real Unix
// socket in t.TempDir(), with workspace dir workspace (a new temporary
// directory if ""), and returns the socket path. Cleanup stops it.
func Start(t testing.TB, workspace string) (socket string) {
	t.Helper()
	socket, _ = StartServer(t, agent.Config{Workspace: workspace})
	return socket
}

// StartServer is Start with a config: zero fields get the current user's
// values (name, uid, gid, home), a temporary workspace and state dir, and a
// logger writing to t.Log. It returns the socket path and the server.
func StartServer(t testing.TB, cfg agent.Config) (socket string, srv *agent.Server) {
	t.Helper()
	if cfg.User == "" || cfg.Home == "" {
		name, home, err := agent.CurrentUser()
		if err != nil {
			t.Fatalf("agenttest: %v", err)
		}
		if cfg.User == "" {
			cfg.User = name
		}
		if cfg.Home == "" {
			cfg.Home = home
		}
	}
	if cfg.UID == 0 && cfg.GID == 0 {
		cfg.UID, cfg.GID = uint32(os.Getuid()), uint32(os.Getgid())
	}
	dir := t.TempDir()
	if cfg.Workspace == "" {
		cfg.Workspace = filepath.Join(dir, "workspace")
	}
	if err := os.MkdirAll(cfg.Workspace, 0o755); err != nil {
		t.Fatalf("agenttest: %v", err)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(dir, "state")
	}
	if cfg.Logger == nil {
		w := &testWriter{t: t}
		t.Cleanup(func() { w.done.Store(true) }) // runs after the agent's cleanup
		cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("agenttest: %v", err)
	}
	socket = filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatalf("agenttest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("agenttest: agent: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("agenttest: agent did not stop within 30s")
		}
	})
	return socket, srv
}

// testWriter sends log lines to t.Log, and nowhere once the test is over.
type testWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}
