package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"octo/internal/agent/agenttest"
	"octo/internal/backend"
	"octo/internal/cluster"
	"octo/internal/slurm"
)

// TestAgentRunner runs programs as sessions of a real (in-process) agent:
// the output and success of one that exits 0 with the given environment,
// a RunError carrying the output of one that fails.
func TestAgentRunner(t *testing.T) {
	sock := agenttest.Start(t, "")
	uid := uint32(os.Getuid())
	router, err := backend.NewRouter(backend.RouterConfig{DevSocket: sock, DevUID: uid})
	if err != nil {
		t.Fatal(err)
	}
	pool := backend.NewPool(router, 5*time.Second, slog.New(slog.DiscardHandler))
	defer pool.Close()
	u := backend.User{Name: "me", UID: uid}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	r := cluster.AgentRunner{Pool: pool, User: u, Env: map[string]string{"OCTO_LAUNCH_TOKEN": "t0k"}}
	out, err := r.Run(ctx, nil, "sh", "-c", `echo "warn" >&2; echo "42;cl $OCTO_LAUNCH_TOKEN"`)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := string(out); got != "warn\n42;cl t0k\n" {
		t.Errorf("output = %q, want the merged output with the environment applied", got)
	}
	if id, err := slurm.ParseJobID([]byte("warn\n42;cl\n")); err != nil || id != "42" {
		t.Errorf("ParseJobID = %q, %v", id, err)
	}
	_, err = r.Run(ctx, nil, "sh", "-c", "echo 'sbatch: error: Invalid account'; exit 1")
	var re *slurm.RunError
	if !errors.As(err, &re) || !strings.Contains(re.Stderr, "Invalid account") {
		t.Errorf("failing program: %v, want a RunError with its output", err)
	}
	if _, err := r.Run(ctx, []byte("in"), "cat"); err == nil {
		t.Error("Run with stdin = nil error, want one")
	}
}
