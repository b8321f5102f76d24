package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"octo/e2e/slurmbox"
	"octo/internal/agentrpc"
	"octo/internal/slurm"
)

// TestDialOut runs octo-agent-dial as alice's Slurm job on the real
// cluster: it dials the gateway, is admitted, and serves the agent
// protocol on the link (the test being the control plane): Info says
// alice, a session runs on the job's node as alice, a written file is
// alice's. Left idle, the agent exits and its job ends.
func TestDialOut(t *testing.T) {
	c := slurmbox.Start(t, "alice", "bob")
	g := slurmbox.StartGateway(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := os.ReadFile(dialBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Box.Path("/usr/local/bin/octo-agent-dial"), bin, 0o755); err != nil {
		t.Fatal(err)
	}

	launch, token := g.NewLaunch("alice", g.UIDs["alice"])
	args, err := slurm.SbatchArgs(slurm.Spec{LaunchID: launch.ID, Agent: "/usr/local/bin/octo-agent-dial --idle-timeout 3s"})
	if err != nil {
		t.Fatal(err)
	}
	args = append(args[:len(args)-1], "--output=/home/alice/agent.log", args[len(args)-1])
	cmd := c.Command(ctx, "alice", args...)
	cmd.Env = append(cmd.Env, slurm.EnvGateway+"="+g.Addr, slurm.EnvLaunch+"="+launch.ID,
		slurm.EnvToken+"="+token, slurm.EnvCASHA256+"="+g.Fingerprint())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sbatch: %v: %s", err, stderr.Bytes())
	}
	jobID, err := slurm.ParseJobID(out)
	if err != nil {
		t.Fatal(err)
	}
	agentLog := func() string { s, _ := c.Run(ctx, "", "cat", "/home/alice/agent.log"); return s }

	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	link, err := g.Take(tctx, "alice")
	tcancel()
	if err != nil {
		t.Fatalf("no agent link: %v\nagent log:\n%s\n%s", err, agentLog(), c.Logs())
	}
	if link.JobID != jobID {
		t.Errorf("link job = %s, want %s", link.JobID, jobID)
	}
	client := agentrpc.NewClient(link.Conn)
	info, err := client.Info(ctx)
	if err != nil {
		t.Fatalf("Info over the link: %v\n%s", err, agentLog())
	}
	if info.User != "alice" || info.UID != g.UIDs["alice"] || info.Home != "/home/alice" {
		t.Errorf("Info = user %q uid %d home %q, want alice %d /home/alice", info.User, info.UID, info.Home, g.UIDs["alice"])
	}
	sess, err := client.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", "hostname; id -un; echo hi > made-remotely"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		o, err := client.ReadOutput(ctx, agentrpc.OutputRequest{ID: sess.ID, Offset: int64(len(got)), Wait: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, o.Data...)
		if o.Done {
			break
		}
	}
	if want := link.Node + "\nalice\n"; string(got) != want {
		t.Errorf("session output = %q, want %q", got, want)
	}
	if owner, err := c.Run(ctx, "", "stat", "-c", "%U", "/home/alice/made-remotely"); err != nil || strings.TrimSpace(owner) != "alice" {
		t.Errorf("file made by the session belongs to %q (%v), want alice", strings.TrimSpace(owner), err)
	}

	// Idle: no request for 3s and no session running: the agent exits and
	// Slurm ends the job.
	for {
		j, ok, err := slurm.FindJob(ctx, c.Runner(""), jobID)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || (j.State != slurm.StateRunning && j.State != slurm.StatePending) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("idle agent's job %s still %s\n%s", jobID, j.State, agentLog())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if _, err := client.Info(ctx); err == nil {
		t.Error("Info answered after the agent's idle exit")
	}
	client.Close()
	if log := agentLog(); !strings.Contains(log, "agent idle, exiting") {
		t.Errorf("agent log lacks the idle exit:\n%s", log)
	}
}
