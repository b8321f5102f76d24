package container

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/config"
	"octo/internal/dockerapi"
)

// BenchmarkColdFirstRequest times a user's first request when no container
// exists: Ensure (create, start, wait for the socket), dial, Agent.Info.
// Compare with BenchmarkPodmanRunTrue in the same run.
func BenchmarkColdFirstRequest(b *testing.B) {
	f := newFixture(b, nil)
	u := testUser(b, f.engine)
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		removeUserContainers(b, f.engine, u)
		// Let the watcher see the exit so the runtime knows it is cold.
		waitFor(5*time.Second, func() bool { return !f.rt.watching(f.rt.user(u.Name)) })
		b.StartTimer()
		if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
			b.Fatalf("Ensure: %v", err)
		}
		c, err := agentrpc.Dial(ctx, "unix", f.sock(u))
		if err != nil {
			b.Fatalf("dial: %v", err)
		}
		if _, err := c.Info(ctx); err != nil {
			b.Fatalf("Info: %v", err)
		}
		c.Close()
	}
}

// BenchmarkAPIColdFirstRequest times GET /api/v1/status through a fresh
// control plane (router, pool, HTTP API) for a user with no container yet:
// authentication, user lookup, Ensure, dial, Agent.Info, JSON reply.
func BenchmarkAPIColdFirstRequest(b *testing.B) {
	h := newAPIHarness(b, config.ModeContainer, nil, "")
	u := h.a
	stop := func() {}
	for b.Loop() {
		b.StopTimer()
		stop()
		removeUserContainers(b, h.f.engine, u.User)
		waitFor(5*time.Second, func() bool { return !h.f.rt.watching(h.f.rt.user(u.Name)) })
		stop = h.serve(config.ModeContainer, b.TempDir())
		b.StartTimer()
		if code, s, body := h.status(u.tok); code != 200 || s.Placement != "container" {
			b.Fatalf("status = %d %s", code, body)
		}
	}
	stop()
}

// BenchmarkWarmRequest times a request when the agent already runs: the
// Ensure fast path, dial, Agent.Info.
func BenchmarkWarmRequest(b *testing.B) {
	f := newFixture(b, nil)
	u := testUser(b, f.engine)
	ctx := context.Background()
	if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
		b.Fatalf("Ensure: %v", err)
	}
	for b.Loop() {
		if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
			b.Fatalf("Ensure: %v", err)
		}
		c, err := agentrpc.Dial(ctx, "unix", f.sock(u))
		if err != nil {
			b.Fatalf("dial: %v", err)
		}
		if _, err := c.Info(ctx); err != nil {
			b.Fatalf("Info: %v", err)
		}
		c.Close()
	}
}

// BenchmarkEngineRunTrue is `podman run --rm --network none IMAGE true`
// through the engine API: create, start, wait, remove.
func BenchmarkEngineRunTrue(b *testing.B) {
	sock, image := engineEnv(b)
	c := dockerapi.New(sock)
	defer c.Close()
	ctx := context.Background()
	cfg := dockerapi.ContainerConfig{Image: image, Cmd: []string{"true"},
		Labels: map[string]string{"octo.test": "bench"}, HostConfig: dockerapi.HostConfig{NetworkMode: "none"}}
	for b.Loop() {
		id, err := c.ContainerCreate(ctx, "", cfg)
		if err != nil {
			b.Fatalf("create: %v", err)
		}
		if err := c.ContainerStart(ctx, id); err != nil {
			b.Fatalf("start: %v", err)
		}
		if code, err := c.ContainerWait(ctx, id); err != nil || code != 0 {
			b.Fatalf("wait: %d, %v", code, err)
		}
		if err := c.ContainerRemove(ctx, id, false); err != nil {
			b.Fatalf("remove: %v", err)
		}
	}
}

// BenchmarkPodmanRunTrue runs `podman run --rm --network none IMAGE true`,
// the baseline BenchmarkColdFirstRequest is held to. When the test engine
// is dockerd it runs `docker -H unix://SOCKET run --rm ...` instead.
func BenchmarkPodmanRunTrue(b *testing.B) {
	sock, image := engineEnv(b)
	c := dockerapi.New(sock)
	defer c.Close()
	v, err := c.Version(context.Background())
	if err != nil {
		b.Fatalf("engine version: %v", err)
	}
	argv := []string{"podman", "run", "--rm", "--network", "none", image, "true"}
	if !v.IsPodman() {
		argv = []string{"docker", "-H", "unix://" + sock, "run", "--rm", "--network", "none", image, "true"}
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		skipOrFail(b, "needs the "+argv[0]+" command for the baseline")
	}
	for b.Loop() {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
}
