package slurm_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"octo/e2e/slurmbox"
	"octo/internal/slurm"
)

// TestAgainstSlurm drives the real cluster of package slurmbox: submit as
// alice, see the job running as alice with its launch id, a second
// submission held by the singleton dependency, cancel, and MUNGE.
func TestAgainstSlurm(t *testing.T) {
	c := slurmbox.Start(t, "alice", "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice, root := c.Runner("alice"), c.Runner("")

	submit := func(launch string) string {
		t.Helper()
		args, err := slurm.SbatchArgs(slurm.Spec{LaunchID: launch, Agent: "sleep 300", TimeLimit: 90 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out, err := alice.Run(ctx, nil, args...)
		if err != nil {
			t.Fatalf("sbatch: %v\n%s", err, c.Logs())
		}
		id, err := slurm.ParseJobID(out)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := submit("launch-1")
	job := waitState(ctx, t, root, first, slurm.StateRunning)
	if job.User != "alice" || job.LaunchID != "launch-1" || !slices.Contains(slurmbox.Nodes, job.Node) {
		t.Errorf("running job = %+v, want user alice, launch launch-1, node h1 or h2", job)
	}
	addrs, err := slurm.NodeAddrs(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := addrs[job.Node], slurmbox.NodeAddrs[job.Node]; got != want {
		t.Errorf("address of %s = %q, want %q", job.Node, got, want)
	}

	// singleton: a second agent job of alice's waits for the first.
	second := submit("launch-2")
	held := waitState(ctx, t, root, second, slurm.StatePending)
	if held.Reason != "Dependency" || held.Node != "" {
		t.Errorf("second job = %+v, want pending on Dependency with no node", held)
	}
	jobs, err := slurm.Queue(ctx, root, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 {
		t.Errorf("alice's agent jobs = %+v, want 2", jobs)
	}
	if jobs, _ := slurm.Queue(ctx, root, "bob"); len(jobs) != 0 {
		t.Errorf("bob's agent jobs = %+v, want none", jobs)
	}

	// bob cannot cancel alice's job; alice can.
	if _, err := c.Runner("bob").Run(ctx, nil, slurm.CancelArgs(first)...); err == nil {
		if j, ok, _ := slurm.FindJob(ctx, root, first); ok && j.State != slurm.StateRunning {
			t.Errorf("bob's scancel ended alice's job: %+v", j)
		}
	}
	for _, id := range []string{second, first} {
		if _, err := alice.Run(ctx, nil, slurm.CancelArgs(id)...); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{first, second} {
		waitGone(ctx, t, root, id)
	}

	// MUNGE: alice's credential decodes to alice's uid, once.
	cred, err := alice.Run(ctx, nil, "munge", "--no-input")
	if err != nil {
		t.Fatal(err)
	}
	uidOut, _ := root.Run(ctx, nil, "id", "-u", "alice")
	want, _ := strconv.ParseUint(strings.TrimSpace(string(uidOut)), 10, 32)
	if got, err := slurm.Unmunge(ctx, root, cred); err != nil || got != uint32(want) {
		t.Errorf("Unmunge(alice's credential) = %d, %v; want %d", got, err, want)
	}
	if _, err := slurm.Unmunge(ctx, root, cred); !errors.Is(err, slurm.ErrMunge) {
		t.Errorf("Unmunge(replayed credential) = %v, want ErrMunge", err)
	}
	forged := []byte(strings.Replace(string(cred), "MUNGE:A", "MUNGE:B", 1))
	if _, err := slurm.Unmunge(ctx, root, forged); !errors.Is(err, slurm.ErrMunge) {
		t.Errorf("Unmunge(altered credential) = %v, want ErrMunge", err)
	}
}

func waitState(ctx context.Context, t *testing.T, r slurm.Runner, id, state string) slurm.Job {
	t.Helper()
	var last slurm.Job
	for {
		j, ok, err := slurm.FindJob(ctx, r, id)
		if err != nil {
			t.Fatal(err)
		}
		if ok && j.State == state {
			return j
		}
		last = j
		select {
		case <-ctx.Done():
			t.Fatalf("job %s never %s; last %+v", id, state, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitGone waits until job id is no longer pending or running.
func waitGone(ctx context.Context, t *testing.T, r slurm.Runner, id string) {
	t.Helper()
	for {
		j, ok, err := slurm.FindJob(ctx, r, id)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || (j.State != slurm.StateRunning && j.State != slurm.StatePending) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s still %s", id, j.State)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
