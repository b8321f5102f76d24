package container

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/dockerapi"
)

// skipOrFail skips with reason, or fails when CI=true (CI must run it).
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

// engineEnv returns the engine socket and image of .ci/setup-engine.sh.
func engineEnv(t testing.TB) (sock, image string) {
	t.Helper()
	sock, image = os.Getenv("OCTO_TEST_ENGINE_SOCKET"), os.Getenv("OCTO_TEST_IMAGE")
	if sock == "" || image == "" {
		skipOrFail(t, "needs a container engine: run `eval \"$(bash .ci/setup-engine.sh)\"` as root to set OCTO_TEST_ENGINE_SOCKET and OCTO_TEST_IMAGE")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: the test chowns workspaces to a test uid and runs a rootful engine")
	}
	return sock, image
}

// lockEngineUsers takes, until the test ends, the lock that serialises tests
// running agent containers for the machine's real users (nobody, daemon) on
// the shared test engine. A container's name and label come from its user,
// so two such tests at once (go test runs packages in parallel) remove each
// other's containers. The same file is locked by octo/container_mode_test.go.
// Within this test binary the lock is shared (a test may make two harnesses;
// the package's tests do not run in parallel).
func lockEngineUsers(t testing.TB) {
	t.Helper()
	engineUsers.mu.Lock()
	defer engineUsers.mu.Unlock()
	if engineUsers.n == 0 {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "octo-test-engine-users.lock"), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatalf("open the engine users lock: %v", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			t.Fatalf("lock the engine users lock: %v", err)
		}
		engineUsers.f = f
	}
	engineUsers.n++
	// Registered first: released after the test's containers are removed.
	t.Cleanup(func() {
		engineUsers.mu.Lock()
		defer engineUsers.mu.Unlock()
		if engineUsers.n--; engineUsers.n == 0 {
			engineUsers.f.Close()
			engineUsers.f = nil
		}
	})
}

var engineUsers struct {
	mu sync.Mutex
	n  int      // holders in this process
	f  *os.File // the locked file while n > 0
}

var (
	agentOnce sync.Once
	agentBin  string
	agentErr  error
)

// agentBinary builds a static octo-agent once per test binary, or returns
// OCTO_TEST_AGENT_BINARY when set.
func agentBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("OCTO_TEST_AGENT_BINARY"); p != "" {
		return p
	}
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "octo-agent-bin-")
		if err != nil {
			agentErr = err
			return
		}
		agentBin = filepath.Join(dir, "octo-agent")
		cmd := exec.Command("go", "build", "-o", agentBin, "octo/octo-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("go build octo/octo-agent: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentBin
}

var userSeq atomic.Int64

// testUser returns a user no other test uses, with a home (the workspace)
// owned by its uid, and removes its containers when the test ends.
func testUser(t testing.TB, c *dockerapi.Client) backend.User {
	t.Helper()
	n := userSeq.Add(1)
	u := backend.User{
		Name: fmt.Sprintf("octo-t%d-%d", os.Getpid()%100000, n),
		UID:  uint32(23000 + n),
		GID:  uint32(23000 + n),
	}
	u.Home = filepath.Join(t.TempDir(), "home", u.Name)
	if err := os.MkdirAll(u.Home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(u.Home, int(u.UID), int(u.GID)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeUserContainers(t, c, u) })
	return u
}

func removeUserContainers(t testing.TB, c *dockerapi.Client, u backend.User) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := c.ContainerList(ctx, LabelUser+"="+u.Name)
	if err != nil {
		t.Logf("list containers of %s: %v", u.Name, err)
	}
	for _, ct := range list {
		if err := c.ContainerRemove(ctx, ct.ID, true); err != nil {
			t.Logf("remove container %s: %v", ct.ID, err)
		}
	}
}

// fixture is a runtime on the test engine with its own socket directory.
type fixture struct {
	rt      *Runtime
	engine  *dockerapi.Client
	cfg     config.Container
	sockDir string
}

func newFixture(t testing.TB, edit func(*config.Container)) *fixture {
	t.Helper()
	sock, image := engineEnv(t)
	cfg := config.Container{
		EngineSocket: sock,
		Image:        image,
		AgentBinary:  agentBinary(t),
		Workspace:    "{home}",
		SocketDir:    filepath.Join(t.TempDir(), "containers"),
		Network:      "none",
		Memory:       256 << 20,
		CPUs:         1,
		PIDs:         200,
		IdleTimeout:  config.Duration{Duration: time.Minute},
	}
	if edit != nil {
		edit(&cfg)
	}
	return newFixtureCfg(t, cfg)
}

func newFixtureCfg(t testing.TB, cfg config.Container) *fixture {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, ok := t.(*testing.B); ok {
		log = slog.New(slog.DiscardHandler) // b.Log would print every line
	}
	rt, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	sock, _ := engineEnv(t)
	e := dockerapi.New(sock) // the real engine, even when cfg names a bogus one
	t.Cleanup(e.Close)
	return &fixture{rt: rt, engine: e, cfg: cfg, sockDir: cfg.SocketDir}
}

// sock is where the router puts u's container agent socket.
func (f *fixture) sock(u backend.User) string {
	return filepath.Join(f.sockDir, u.Name, "agent.sock")
}

// containers lists u's containers.
func (f *fixture) containers(t testing.TB, u backend.User) []dockerapi.Container {
	t.Helper()
	list, err := f.engine.ContainerList(ctxT(t), LabelUser+"="+u.Name)
	if err != nil {
		t.Fatalf("ContainerList: %v", err)
	}
	return list
}

// dial connects to u's agent and checks it serves u.
func (f *fixture) dial(t testing.TB, u backend.User) *agentrpc.Client {
	t.Helper()
	c, err := agentrpc.Dial(ctxT(t), "unix", f.sock(u))
	if err != nil {
		t.Fatalf("dial agent of %s: %v", u.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// run runs argv as a session and returns its output once it ended.
func run(t testing.TB, c *agentrpc.Client, argv ...string) string {
	t.Helper()
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: argv})
	if err != nil {
		t.Fatalf("Start %q: %v", argv, err)
	}
	var out []byte
	var off int64
	for {
		o, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Offset: off, Wait: 10 * time.Second})
		if err != nil {
			t.Fatalf("ReadOutput of %q: %v", argv, err)
		}
		out = append(out, o.Data...)
		off = o.Next
		if o.Done {
			return string(out)
		}
	}
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
