package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/dockerapi"
)

func TestEnsureRunsAgentAsUser(t *testing.T) {
	f := newFixture(t, nil)
	u := testUser(t, f.engine)
	ctx := ctxT(t)
	if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	c := f.dial(t, u)
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.User != u.Name || info.UID != u.UID || info.GID != u.GID || info.Workspace != u.Home {
		t.Errorf("Info = user %q uid %d gid %d workspace %q; want %q %d %d %q",
			info.User, info.UID, info.GID, info.Workspace, u.Name, u.UID, u.GID, u.Home)
	}

	// An init is PID 1, reaping orphans; the agent is its child.
	if info.PID == 1 {
		t.Errorf("agent is PID 1 in its container, want the engine's init there")
	}
	if got := strings.TrimSpace(run(t, c, "sh", "-c", "sleep 0.2 & echo started")); got != "started" {
		t.Errorf("orphaning session printed %q", got)
	}
	time.Sleep(400 * time.Millisecond)
	if ps := run(t, c, "ps", "-o", "pid,stat,comm"); strings.Contains(ps, " Z ") {
		t.Errorf("a zombie is left in the container:\n%s", ps)
	}

	// The session's process runs as the user, inside the container.
	if got, want := strings.TrimSpace(run(t, c, "id", "-u")), fmt.Sprint(u.UID); got != want {
		t.Errorf("id -u in a session = %q, want %q", got, want)
	}
	// What it writes on the workspace belongs to the user on the host.
	run(t, c, "sh", "-c", "echo from-container > made-here")
	fi, err := os.Stat(filepath.Join(u.Home, "made-here"))
	if err != nil {
		t.Fatalf("file written in the container is not on the host: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != u.UID || st.Gid != u.GID {
		t.Errorf("host owner of made-here = %d:%d, want %d:%d", st.Uid, st.Gid, u.UID, u.GID)
	}
	// The agent's files API writes there too.
	if _, err := c.Write(ctx, agentrpc.WriteRequest{Path: "via-api", Data: []byte("x")}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(u.Home, "via-api")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != u.UID {
		t.Errorf("via-api on host: %v, want owned by %d", err, u.UID)
	}
	// No network but loopback.
	if got := run(t, c, "sh", "-c", "ls /sys/class/net"); strings.TrimSpace(got) != "lo" {
		t.Errorf("network interfaces = %q, want only lo", got)
	}

	// Limits and identity are what the engine applied.
	list := f.containers(t, u)
	if len(list) != 1 {
		t.Fatalf("containers of %s = %d, want 1", u.Name, len(list))
	}
	in, err := f.engine.ContainerInspect(ctx, list[0].ID)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	pids := int64(-1)
	if in.HostConfig.PidsLimit != nil {
		pids = *in.HostConfig.PidsLimit
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"User", in.Config.User, fmt.Sprintf("%d:%d", u.UID, u.GID)},
		{"Memory", in.HostConfig.Memory, int64(256 << 20)},
		{"NanoCpus", in.HostConfig.NanoCPUs, int64(1e9)},
		{"PidsLimit", pids, int64(200)},
		{"NetworkMode", in.HostConfig.NetworkMode, "none"},
		{"ReadonlyRootfs", in.HostConfig.ReadonlyRootfs, true},
		{"label user", in.Config.Labels[LabelUser], u.Name},
		{"name", strings.TrimPrefix(in.Name, "/"), containerName(u)},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("inspect %s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}

	// And the kernel enforces them on the container's cgroup (v1 or v2 paths).
	limits := run(t, c, "sh", "-c", "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null")
	if got, want := strings.Fields(limits), []string{fmt.Sprint(256 << 20), "200"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("cgroup memory and pids limits seen in the container = %q, want %q", got, want)
	}

	// A second Ensure reuses the container.
	if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if again := f.containers(t, u); len(again) != 1 || again[0].ID != list[0].ID {
		t.Errorf("after second Ensure: %+v, want the same single container %s", again, list[0].ID)
	}
}

func TestEnsureConcurrentStartsOne(t *testing.T) {
	f := newFixture(t, nil)
	u := testUser(t, f.engine)
	ctx := ctxT(t)
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.rt.Ensure(ctx, u, f.sock(u))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Ensure #%d: %v", i, err)
		}
	}
	if list := f.containers(t, u); len(list) != 1 {
		t.Errorf("%d concurrent Ensure calls left %d containers, want 1", n, len(list))
	}
}

func TestIdleExitRemovesContainer(t *testing.T) {
	f := newFixture(t, func(c *config.Container) { c.IdleTimeout = config.Duration{Duration: time.Second} })
	u := testUser(t, f.engine)
	ctx := ctxT(t)
	if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	first := f.containers(t, u)
	if len(first) != 1 {
		t.Fatalf("containers = %d, want 1", len(first))
	}
	if !waitFor(20*time.Second, func() bool { return len(f.containers(t, u)) == 0 }) {
		t.Fatalf("container still there 20s after a 1s idle timeout: %+v", f.containers(t, u))
	}
	if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
		t.Fatalf("Ensure after idle exit: %v", err)
	}
	next := f.containers(t, u)
	if len(next) != 1 || next[0].ID == first[0].ID {
		t.Errorf("after idle exit: %+v, want one new container (not %s)", next, first[0].ID)
	}
	if _, err := f.dial(t, u).Info(ctx); err != nil {
		t.Errorf("Info from the new agent: %v", err)
	}
}

func TestCrashedContainerIsReplaced(t *testing.T) {
	f := newFixture(t, nil)
	u := testUser(t, f.engine)
	ctx := ctxT(t)
	if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	old := f.containers(t, u)[0].ID
	if err := f.engine.ContainerKill(ctx, old, "KILL"); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
		t.Fatalf("Ensure after crash: %v", err)
	}
	list := f.containers(t, u)
	if len(list) != 1 || list[0].ID == old || list[0].State != "running" {
		t.Errorf("after crash: %+v, want one new running container (not %s)", list, old)
	}
	if _, err := f.dial(t, u).Info(ctx); err != nil {
		t.Errorf("Info from the replacement: %v", err)
	}
}

// A container left by an earlier control plane is reused while its agent
// answers; dead leftovers are removed, never duplicated.
func TestLeftoversAreReusedOrReplaced(t *testing.T) {
	f := newFixture(t, nil)
	u := testUser(t, f.engine)
	ctx := ctxT(t)
	if err := f.rt.Ensure(ctx, u, f.sock(u)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	running := f.containers(t, u)[0].ID
	f.rt.Close()

	// A dead container labelled for u, as a crash would leave.
	img := f.cfg.Image
	dead, err := f.engine.ContainerCreate(ctx, "", dockerapi.ContainerConfig{Image: img, Cmd: []string{"true"},
		Labels: map[string]string{LabelManaged: "1", LabelUser: u.Name}})
	if err != nil {
		t.Fatalf("create leftover: %v", err)
	}
	// A running one with the labels but not the name, as a hand-made copy.
	other, err := f.engine.ContainerCreate(ctx, "", dockerapi.ContainerConfig{Image: img, Cmd: []string{"sleep", "60"},
		Labels: map[string]string{LabelManaged: "1", LabelUser: u.Name}})
	if err == nil {
		err = f.engine.ContainerStart(ctx, other)
	}
	if err != nil {
		t.Fatalf("start labelled copy: %v", err)
	}

	f2 := newFixtureCfg(t, f.cfg)
	if err := f2.rt.Ensure(ctx, u, f.sock(u)); err != nil {
		t.Fatalf("Ensure by a new runtime: %v", err)
	}
	list := f.containers(t, u)
	if len(list) != 1 || list[0].ID != running {
		t.Errorf("containers = %+v, want only the running leftover %s (dead %s and copy %s removed)", list, running, dead, other)
	}

	// The adopted container is watched: killing it removes it.
	if err := f.engine.ContainerKill(ctx, running, "KILL"); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if !waitFor(10*time.Second, func() bool { return len(f.containers(t, u)) == 0 }) {
		t.Errorf("killed adopted container not removed: %+v", f.containers(t, u))
	}
}

func TestSocketDirIsCleaned(t *testing.T) {
	f := newFixture(t, nil)
	u := testUser(t, f.engine)
	dir := filepath.Dir(f.sock(u))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Something another uid planted where the agent will listen, and a
	// stale regular file at the socket path.
	planted := filepath.Join(dir, "planted")
	os.WriteFile(planted, nil, 0o644)
	os.Chown(planted, 4444, 4444)
	os.WriteFile(f.sock(u), []byte("stale"), 0o644)
	os.Chown(f.sock(u), int(u.UID), int(u.GID))

	if err := f.rt.Ensure(ctxT(t), u, f.sock(u)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if _, err := os.Lstat(planted); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("entry of another uid survived: %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode()&(os.ModePerm|os.ModeSticky), os.FileMode(0o770); got != want {
		t.Errorf("socket dir mode = %v, want %v (0700 and the user's ACL entry)", got, want)
	}
	// The agent keeps its state in the workspace, not beside its socket.
	lock := filepath.Join(u.Home, ".local", "state", "octo-agent-container", "lock")
	if fi, err := os.Lstat(lock); err != nil || !fi.Mode().IsRegular() || fi.Sys().(*syscall.Stat_t).Uid != u.UID {
		t.Errorf("state lock %s: %v, want a file owned by %d", lock, err, u.UID)
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 || names[0].Name() != "agent.sock" {
		t.Errorf("socket dir holds %v, want the socket alone", names)
	}
}

// wantErr checks that err is a *backend.Error with code whose text
// contains every part.
func wantErr(t *testing.T, err error, code string, parts ...string) {
	t.Helper()
	var be *backend.Error
	if !errors.As(err, &be) {
		t.Fatalf("error = %v (%T), want *backend.Error", err, err)
	}
	if be.Code != code {
		t.Errorf("error code = %s, want %s (%v)", be.Code, code, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestEnsureErrors(t *testing.T) {
	sock, _ := engineEnv(t)
	bogus := filepath.Join(t.TempDir(), "fail-agent")
	os.WriteFile(bogus, []byte("#!/bin/sh\necho 'octo-agent: cannot serve: bogus failure' >&2\nexit 3\n"), 0o755)
	nobody := filepath.Join(t.TempDir(), "nobody.sock")
	tests := []struct {
		name  string
		edit  func(*config.Container)
		user  func(*backend.User)
		code  string
		parts []string
	}{
		{"image missing", func(c *config.Container) { c.Image = "octo-no-such-image:never" }, nil,
			backend.CodeUnavailable, []string{"octo-no-such-image:never", "setup-engine.sh", sock}},
		{"engine unreachable", func(c *config.Container) { c.EngineSocket = nobody }, nil,
			backend.CodeUnavailable, []string{nobody, "does not answer"}},
		{"agent exits at once", func(c *config.Container) { c.AgentBinary = bogus }, nil,
			backend.CodeFailed, []string{"exited with status 3", "bogus failure"}},
		{"agent binary missing", func(c *config.Container) { c.AgentBinary = "/nonexistent/octo-agent" }, nil,
			backend.CodeUnavailable, []string{"/nonexistent/octo-agent", "CGO_ENABLED=0"}},
		{"workspace missing", func(c *config.Container) { c.Workspace = "/nonexistent/{user}" }, nil,
			backend.CodeUnavailable, []string{"/nonexistent/octo-t", "does not exist"}},
		{"root", nil, func(u *backend.User) { u.UID = 0 },
			backend.CodeUnavailable, []string{"as root"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.edit)
			u := testUser(t, f.engine)
			if tt.user != nil {
				tt.user(&u)
			}
			err := f.rt.Ensure(ctxT(t), u, f.sock(u))
			t.Logf("error: %v", err)
			wantErr(t, err, tt.code, tt.parts...)
			if list := f.containers(t, u); len(list) != 0 {
				t.Errorf("failed Ensure left containers: %+v", list)
			}
		})
	}
}

func TestPing(t *testing.T) {
	sock, _ := engineEnv(t)
	nobody := filepath.Join(t.TempDir(), "nobody.sock")
	saved := DefaultEngineSockets
	t.Cleanup(func() { DefaultEngineSockets = saved })

	// Default discovery: the first socket that answers wins.
	DefaultEngineSockets = []string{nobody, sock}
	f := newFixture(t, func(c *config.Container) { c.EngineSocket = "" })
	if err := f.rt.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping with %v: %v", DefaultEngineSockets, err)
	}
	if got := f.rt.engine.Socket(); got != sock {
		t.Errorf("engine found at %s, want %s", got, sock)
	}

	DefaultEngineSockets = []string{nobody, nobody + "2"}
	f = newFixture(t, func(c *config.Container) { c.EngineSocket = "" })
	wantErr(t, f.rt.Ping(ctxT(t)), backend.CodeUnavailable, nobody, nobody+"2")
}

func TestEnsureHonoursContext(t *testing.T) {
	f := newFixture(t, nil)
	u := testUser(t, f.engine)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	time.Sleep(2 * time.Millisecond)
	wantErr(t, f.rt.Ensure(ctx, u, f.sock(u)), backend.CodeTimeout, u.Name)
}
