package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/api"
	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/container"
	"octo/internal/dockerapi"
	"octo/internal/tokens"
)

// skipOrFail skips with reason, or fails when CI=true (CI must run it).
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipping)", reason)
	}
	t.Skip(reason)
}

// In mode auto, a user without a local agent socket is served by an agent
// in a container, through the same router, pool and API: the session runs
// as the user, the files land in the mounted workspace, and the agent
// socket the container created passes the SO_PEERCRED check.
func TestAutoModeFallsBackToContainer(t *testing.T) {
	engine, image := os.Getenv("OCTO_TEST_ENGINE_SOCKET"), os.Getenv("OCTO_TEST_IMAGE")
	if engine == "" || image == "" {
		skipOrFail(t, "needs a container engine: eval \"$(bash .ci/setup-engine.sh)\" sets OCTO_TEST_ENGINE_SOCKET and OCTO_TEST_IMAGE")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: a rootful engine and a workspace owned by nobody")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		skipOrFail(t, "needs the user nobody")
	}
	lockEngineUsers(t)
	agentBin := os.Getenv("OCTO_TEST_AGENT_BINARY")
	if agentBin == "" {
		agentBin = filepath.Join(t.TempDir(), "octo-agent")
		cmd := exec.Command("go", "build", "-o", agentBin, "octo/octo-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build octo-agent: %v\n%s", err, out)
		}
	}
	ws := filepath.Join(t.TempDir(), "ws")
	os.Mkdir(ws, 0o755)
	os.Chown(ws, 65534, 65534)

	cfg := config.Default()
	cfg.Backend.Mode = config.ModeAuto
	cfg.Local = config.Local{SocketDir: t.TempDir(), ConnectTimeout: config.Duration{Duration: 5 * time.Second}}
	cfg.Users = config.Users{Allow: []string{nobody.Username}}
	cfg.Container = config.Container{EngineSocket: engine, Image: image, AgentBinary: agentBin,
		Workspace: ws, SocketDir: filepath.Join(t.TempDir(), "containers"), Network: "none",
		IdleTimeout: config.Duration{Duration: time.Minute}}
	dc := dockerapi.New(engine)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		list, _ := dc.ContainerList(ctx, container.LabelUser+"="+nobody.Username)
		for _, c := range list {
			dc.ContainerRemove(ctx, c.ID, true)
		}
	})

	log := slog.New(slog.DiscardHandler)
	router, err := newRouter(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	pool := backend.NewPool(router, cfg.Local.ConnectTimeout.Duration, log)
	defer pool.Close()
	store, _ := tokens.Open(t.TempDir())
	defer store.Close()
	tok, _, _ := store.Create(nobody.Username, "", false)
	srv := api.New(api.Config{Pool: pool, Users: backend.NewUsers(cfg.Users), Tokens: store, Log: log,
		AgentTimeout: time.Minute})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	do := func(method, path, body string) (int, []byte) {
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	code, body := do("GET", "/api/v1/status", "")
	var st struct {
		Mode, Placement string
		Agent           struct{ UID uint32 }
	}
	json.Unmarshal(body, &st)
	if code != 200 || st.Mode != "auto" || st.Placement != "container" || st.Agent.UID != 65534 {
		t.Fatalf("status: %d %s; want placement container, agent uid 65534", code, body)
	}
	if code, body := do("PUT", "/api/v1/files/from-api.txt", "via the container\n"); code != 201 {
		t.Errorf("PUT: %d %s", code, body)
	}
	if got, _ := os.ReadFile(filepath.Join(ws, "from-api.txt")); string(got) != "via the container\n" {
		t.Errorf("workspace file holds %q", got)
	}
	code, body = do("POST", "/api/v1/sessions", `{"command":["id","-u"]}`)
	var s struct{ ID string }
	json.Unmarshal(body, &s)
	if code != 201 {
		list, _ := dc.ContainerList(context.Background(), container.LabelUser+"="+nobody.Username)
		for _, c := range list {
			o, e, _ := dc.ContainerLogs(context.Background(), c.ID, 30)
			t.Logf("container %s logs:\n%s%s", c.ID, o, e)
			ins, _ := dc.ContainerInspect(context.Background(), c.ID)
			t.Logf("inspect: %+v", ins.State)
		}
		code2, body2 := do("POST", "/api/v1/sessions", `{"command":["id","-u"]}`)
		t.Logf("second try: %d %s", code2, body2)
		t.Fatalf("start: %d %s", code, body)
	}
	_, out := do("GET", "/api/v1/sessions/"+s.ID+"/output?follow=1", "")
	if strings.TrimSpace(string(out)) != "65534" {
		t.Errorf("id -u in the container printed %q, want 65534", out)
	}
}

// lockEngineUsers takes, until the test ends, the lock that serialises tests
// running agent containers for the machine's real users (nobody, daemon) on
// the shared test engine. A container's name and label come from its user,
// so two such tests at once (go test runs packages in parallel) remove each
// other's containers. The same file is locked by internal/container's API tests (helpers_test.go).
func lockEngineUsers(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "octo-test-engine-users.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("open the engine users lock: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock the engine users lock: %v", err)
	}
	t.Cleanup(func() { f.Close() }) // registered first: released after the containers are removed
}
