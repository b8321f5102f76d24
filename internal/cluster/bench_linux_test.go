package cluster_test

import (
	"context"
	"net"
	"testing"
	"time"

	"octo/e2e/slurmbox"
	"octo/internal/agentrpc"
	"octo/internal/backend"
)

// BenchmarkSlurm measures, on the real cluster, side by side in one run:
//
//   - cold: a first request through Slurm placement (sbatch as the user,
//     the agent started on a node and admitted by the gateway, Info
//     answered), against `sbatch --wait` of `true` as the same user;
//   - warm: one Info call over the agent's TLS link, against one over a
//     Unix socket to the same octo-agent binary serving the same user on
//     the controller's host.
//
// Run with (each boots its own cluster):
//
//	sudo CI=true go test -run '^$' -bench SlurmCold -benchtime 3x ./internal/cluster
//	sudo CI=true go test -run '^$' -bench SlurmWarm -benchtime 5000x ./internal/cluster
func BenchmarkSlurmCold(b *testing.B) {
	c := slurmbox.Start(b, "alice")
	c.InstallAgent(b)
	ctx := context.Background()
	cp := startControlPlaneTB(b, c)
	alice := cp.user("alice")

	b.Run("cold/octo-first-request", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			cp.pool.Close()
			cp.pool = backend.NewPool(cp.router, 5*time.Second, discard)
			c.Run(ctx, "alice", "scancel", "--name=octo-agent")
			waitNoJobsTB(ctx, b, c, "alice")
			for cp.g.Connected("alice") { // the gateway drops the dead agent's link
				time.Sleep(10 * time.Millisecond)
			}
			b.StartTimer()
			if _, err := cp.pool.Do(ctx, alice, backend.Repeatable, func(cl *agentrpc.Client) error {
				_, err := cl.Info(ctx)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold/sbatch-wait-true", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := c.Run(ctx, "alice", "sbatch", "--wait", "--quiet", "--output=/dev/null", "--wrap", "true"); err != nil {
				b.Fatal(err)
			}
		}
	})

}

func BenchmarkSlurmWarm(b *testing.B) {
	c := slurmbox.Start(b, "alice")
	c.InstallAgent(b)
	ctx := context.Background()
	cp := startControlPlaneTB(b, c)
	alice := cp.user("alice")
	if _, err := cp.pool.Do(ctx, alice, backend.Repeatable, func(cl *agentrpc.Client) error { _, err := cl.Info(ctx); return err }); err != nil {
		b.Fatal(err)
	}
	b.Run("warm/tls-link", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := cp.pool.Do(ctx, alice, backend.Repeatable, func(cl *agentrpc.Client) error {
				_, err := cl.Info(ctx)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	sock := "/home/alice/bench-agent.sock"
	if out, err := c.Run(ctx, "", "systemd-run", "--quiet", "--unit=bench-local-agent", "--uid=alice",
		slurmbox.AgentPath, "serve", "--idle-timeout", "0", "--socket", sock,
		"--state-dir", "/home/alice/.local/state/octo-agent-bench"); err != nil {
		b.Fatalf("start local agent: %v %s", err, out)
	}
	var conn net.Conn
	var err error
	for try := 0; try < 100; try++ {
		if conn, err = net.Dial("unix", c.Box.Path(sock)); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		b.Fatal(err)
	}
	local := agentrpc.NewClient(conn)
	defer local.Close()
	if _, err := local.Info(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("warm/unix-socket", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := local.Info(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
