package container

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/api"
	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/tokens"
)

// The API suite against the container placement: a real api.Server whose
// router runs agents in containers on the test engine, for two real
// accounts of the machine (nobody and daemon: the image has no passwd).

type apiUser struct {
	backend.User
	tok, ws string
}

type apiHarness struct {
	t     testing.TB
	f     *fixture
	store *tokens.Store
	url   string
	hc    *http.Client
	a, b  apiUser
}

func lookupUser(t testing.TB, name string) backend.User {
	pu, err := user.Lookup(name)
	if err != nil {
		skipOrFail(t, "needs the account "+name+" in /etc/passwd")
	}
	uid, _ := strconv.ParseUint(pu.Uid, 10, 32)
	gid, _ := strconv.ParseUint(pu.Gid, 10, 32)
	return backend.User{Name: pu.Username, UID: uint32(uid), GID: uint32(gid), Home: pu.HomeDir}
}

// newAPIHarness serves the API in mode (container or auto) with the runtime
// edited by edit; in auto mode, local holds the local socket_dir.
func newAPIHarness(t testing.TB, mode string, edit func(*config.Container), local string) *apiHarness {
	lockEngineUsers(t)
	wsRoot := filepath.Join(t.TempDir(), "ws")
	f := newFixture(t, func(c *config.Container) {
		c.Workspace = wsRoot + "/{user}"
		if edit != nil {
			edit(c)
		}
	})
	h := &apiHarness{t: t, f: f}
	store, err := tokens.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h.store = store
	for i, name := range []string{"nobody", "daemon"} {
		u := apiUser{User: lookupUser(t, name), ws: filepath.Join(wsRoot, name)}
		os.MkdirAll(u.ws, 0o755)
		if err := os.Chown(u.ws, int(u.UID), int(u.GID)); err != nil {
			t.Fatal(err)
		}
		if u.tok, _, err = store.Create(name, "", false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeUserContainers(t, f.engine, u.User) })
		if i == 0 {
			h.a = u
		} else {
			h.b = u
		}
	}
	if local == "" {
		local = t.TempDir()
	}
	t.Cleanup(h.serve(mode, local))
	return h
}

// serve starts a control plane (router, pool, API server) in front of the
// harness's runtime and returns the function that stops it.
func (h *apiHarness) serve(mode, local string) (stop func()) {
	t := h.t
	router, err := backend.NewRouter(backend.RouterConfig{Mode: mode, Local: config.Local{SocketDir: local},
		Container: h.f.sockDir, Runtime: h.f.rt})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	if _, ok := t.(*testing.B); ok {
		log = slog.New(slog.DiscardHandler)
	}
	pool := backend.NewPool(router, 5*time.Second, log)
	srv := api.New(api.Config{Pool: pool, Users: backend.NewUsers(config.Users{Allow: []string{"nobody", "daemon"}}),
		Tokens: h.store, Log: log, Version: "test", MaxBodyBytes: 1 << 20, AgentTimeout: 20 * time.Second})
	ts := httptest.NewServer(srv.Handler())
	h.url, h.hc = ts.URL, ts.Client()
	return func() { ts.Close(); pool.Close() }
}

func (h *apiHarness) do(method, path, tok, body string) (*http.Response, string) {
	h.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.url+path, r)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// expect checks status and, when code is set, the error code of the reply.
func (h *apiHarness) expect(what string, resp *http.Response, body string, status int, code string) {
	h.t.Helper()
	if resp.StatusCode != status {
		h.t.Errorf("%s: status %d, want %d; body %s", what, resp.StatusCode, status, body)
		return
	}
	if code != "" {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal([]byte(body), &e); e.Error.Code != code {
			h.t.Errorf("%s: body %s, want error code %q", what, body, code)
		}
	}
}

type apiSession struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	ExitCode *int   `json:"exit_code"`
	Signal   string `json:"signal"`
}

func (h *apiHarness) start(tok, body string) apiSession {
	h.t.Helper()
	resp, b := h.do("POST", "/api/v1/sessions", tok, body)
	if resp.StatusCode != 201 {
		h.t.Fatalf("start %s: %d %s", body, resp.StatusCode, b)
	}
	var s apiSession
	json.Unmarshal([]byte(b), &s)
	return s
}

func (h *apiHarness) waitExit(tok, id string) apiSession {
	h.t.Helper()
	var s apiSession
	waitFor(15*time.Second, func() bool {
		_, b := h.do("GET", "/api/v1/sessions/"+id, tok, "")
		json.Unmarshal([]byte(b), &s)
		return s.State != "running"
	})
	return s
}

func (h *apiHarness) output(tok, id string) string {
	h.t.Helper()
	_, b := h.do("GET", "/api/v1/sessions/"+id+"/output", tok, "")
	return b
}

type apiStatus struct {
	Mode      string `json:"mode"`
	User      string `json:"user"`
	Placement string `json:"placement"`
	Agent     struct {
		User      string `json:"user"`
		UID       uint32 `json:"uid"`
		Workspace string `json:"workspace"`
	} `json:"agent"`
}

func (h *apiHarness) status(tok string) (int, apiStatus, string) {
	resp, b := h.do("GET", "/api/v1/status", tok, "")
	var s apiStatus
	json.Unmarshal([]byte(b), &s)
	return resp.StatusCode, s, b
}

func TestAPIContainerPlacement(t *testing.T) {
	h := newAPIHarness(t, config.ModeContainer, nil, "")
	a, b := h.a, h.b

	t.Run("status", func(t *testing.T) {
		code, s, body := h.status(a.tok)
		if code != 200 || s.Mode != "container" || s.Placement != "container" || s.Agent.UID != a.UID || s.Agent.Workspace != a.ws {
			t.Errorf("status = %d %s; want 200, mode and placement container, uid %d, workspace %s", code, body, a.UID, a.ws)
		}
	})

	t.Run("sessions", func(t *testing.T) {
		s := h.start(a.tok, `{"command":["sh","-c","echo out; echo err >&2; exit 3"]}`)
		if end := h.waitExit(a.tok, s.ID); end.State != "exited" || end.ExitCode == nil || *end.ExitCode != 3 {
			t.Errorf("session ended as %+v, want exited with 3", end)
		}
		if got := h.output(a.tok, s.ID); got != "out\nerr\n" {
			t.Errorf("output = %q, want %q", got, "out\nerr\n")
		}
		id := h.start(a.tok, `{"command":["id","-u"]}`)
		h.waitExit(a.tok, id.ID)
		if got, want := strings.TrimSpace(h.output(a.tok, id.ID)), strconv.Itoa(int(a.UID)); got != want {
			t.Errorf("id -u in the container = %q, want %q", got, want)
		}

		c := h.start(a.tok, `{"command":["cat"]}`)
		resp, body := h.do("POST", "/api/v1/sessions/"+c.ID+"/input", a.tok, "hello ")
		h.expect("input", resp, body, 204, "")
		resp, body = h.do("POST", "/api/v1/sessions/"+c.ID+"/input?eof=1", a.tok, "world")
		h.expect("input eof", resp, body, 204, "")
		h.waitExit(a.tok, c.ID)
		if got := h.output(a.tok, c.ID); got != "hello world" {
			t.Errorf("cat output = %q, want %q", got, "hello world")
		}

		tty := h.start(a.tok, `{"command":["sleep","30"],"tty":true,"rows":10,"cols":20}`)
		resp, body = h.do("POST", "/api/v1/sessions/"+tty.ID+"/resize", a.tok, `{"rows":30,"cols":100}`)
		h.expect("resize", resp, body, 204, "")
		resp, body = h.do("POST", "/api/v1/sessions/"+tty.ID+"/signal", a.tok, `{"signal":"TERM"}`)
		h.expect("signal", resp, body, 204, "")
		if e := h.waitExit(a.tok, tty.ID); e.Signal != "TERM" {
			t.Errorf("after TERM: %+v", e)
		}
		sl := h.start(a.tok, `{"command":["sleep","30"]}`)
		resp, body = h.do("DELETE", "/api/v1/sessions/"+sl.ID, a.tok, "")
		h.expect("stop", resp, body, 200, "")

		resp, body = h.do("GET", "/api/v1/sessions/nope", a.tok, "")
		h.expect("unknown session", resp, body, 404, "not_found")
		resp, body = h.do("POST", "/api/v1/sessions", a.tok, `{"command":[]}`)
		h.expect("empty command", resp, body, 400, "invalid")
		// Another user cannot see the session: their agent is another container.
		resp, body = h.do("GET", "/api/v1/sessions/"+s.ID, b.tok, "")
		h.expect("other user's session", resp, body, 404, "not_found")
	})

	t.Run("files", func(t *testing.T) {
		resp, body := h.do("PUT", "/api/v1/files/dir/new.txt?parents=1", a.tok, "fresh")
		h.expect("PUT", resp, body, 201, "")
		fi, err := os.Stat(filepath.Join(a.ws, "dir", "new.txt"))
		if err != nil {
			t.Fatalf("PUT file not on the host: %v", err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != a.UID {
			t.Errorf("host owner of the PUT file = %d, want %d", st.Uid, a.UID)
		}
		resp, body = h.do("GET", "/api/v1/files/dir/new.txt", a.tok, "")
		if resp.StatusCode != 200 || body != "fresh" {
			t.Errorf("GET = %d %q, want 200 fresh", resp.StatusCode, body)
		}
		// A file too big to come inline: the agent in the container passes
		// its descriptor through the bind-mounted socket, and a streamed
		// upload writes into the descriptor of its temporary file.
		big := strings.Repeat("0123456789abcdef", 1<<15) // 512 KiB
		resp, body = h.do("PUT", "/api/v1/files/dir/big.bin", a.tok, big)
		h.expect("PUT big", resp, body, 201, "")
		if got, _ := os.ReadFile(filepath.Join(a.ws, "dir", "big.bin")); string(got) != big {
			t.Errorf("uploaded big file: %d bytes, want %d", len(got), len(big))
		}
		resp, body = h.do("GET", "/api/v1/files/dir/big.bin", a.tok, "")
		if resp.StatusCode != 200 || body != big {
			t.Errorf("GET big = %d, %d bytes; want 200, %d bytes", resp.StatusCode, len(body), len(big))
		}
		resp, body = h.do("GET", "/api/v1/files/dir", a.tok, "")
		if resp.StatusCode != 200 || !strings.Contains(body, `"new.txt"`) {
			t.Errorf("listing = %d %s", resp.StatusCode, body)
		}
		resp, body = h.do("POST", "/api/v1/files/made?op=mkdir", a.tok, "")
		h.expect("mkdir", resp, body, 201, "")
		resp, body = h.do("POST", "/api/v1/files/dir/new.txt?op=rename&to=made/moved.txt", a.tok, "")
		h.expect("rename", resp, body, 200, "")
		if got, _ := os.ReadFile(filepath.Join(a.ws, "made", "moved.txt")); string(got) != "fresh" {
			t.Errorf("renamed file holds %q", got)
		}
		resp, body = h.do("DELETE", "/api/v1/files/made?recursive=1", a.tok, "")
		h.expect("DELETE", resp, body, 204, "")
		resp, body = h.do("GET", "/api/v1/files/made", a.tok, "")
		h.expect("GET deleted", resp, body, 404, "not_found")
		resp, body = h.do("GET", "/api/v1/files/..%2F..%2Fetc%2Fpasswd", a.tok, "")
		h.expect("GET outside", resp, body, 403, "outside_workspace")
		// b's agent sees only b's workspace.
		os.WriteFile(filepath.Join(a.ws, "secret"), []byte("a's"), 0o600)
		resp, body = h.do("GET", "/api/v1/files/secret", b.tok, "")
		h.expect("other user's file", resp, body, 404, "not_found")
	})

	t.Run("follow", func(t *testing.T) {
		s := h.start(a.tok, `{"command":["sh","-c","echo one; sleep 0.3; echo two; sleep 0.3; echo three"]}`)
		req, _ := http.NewRequest("GET", h.url+"/api/v1/sessions/"+s.ID+"/output?follow=1", nil)
		req.Header.Set("Authorization", "Bearer "+a.tok)
		resp, err := h.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := time.Now()
		first := make([]byte, 4)
		if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "one\n" {
			t.Fatalf("first chunk %q, %v; want \"one\\n\"", first, err)
		}
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Errorf("first chunk took %v; it should arrive before the session ends", d)
		}
		rest, _ := io.ReadAll(resp.Body)
		if string(rest) != "two\nthree\n" || resp.Trailer.Get("Octo-Next-Offset") != "14" {
			t.Errorf("rest %q, trailer %v; want \"two\\nthree\\n\" and next offset 14", rest, resp.Trailer)
		}
	})

	// A crashed container is replaced on the next request.
	t.Run("crash", func(t *testing.T) {
		if code, _, body := h.status(a.tok); code != 200 {
			t.Fatalf("status = %d %s", code, body)
		}
		old := h.f.containers(t, a.User)
		if len(old) != 1 {
			t.Fatalf("containers before the crash: %+v", old)
		}
		if err := h.f.engine.ContainerKill(ctxT(t), old[0].ID, "KILL"); err != nil {
			t.Fatal(err)
		}
		code, after, body := h.status(a.tok)
		if code != 200 || after.Placement != "container" || after.Agent.UID != a.UID {
			t.Fatalf("status after the crash = %d %s, want 200 from a new container", code, body)
		}
		if list := h.f.containers(t, a.User); len(list) != 1 || list[0].ID == old[0].ID {
			t.Errorf("containers after the crash = %+v, want one new one (not %s)", list, old[0].ID)
		}
	})

	if list := h.f.containers(t, a.User); len(list) != 1 {
		t.Errorf("%s has %d containers, want 1", a.Name, len(list))
	}
	if list := h.f.containers(t, b.User); len(list) != 1 {
		t.Errorf("%s has %d containers, want 1", b.Name, len(list))
	}
}

// In auto mode a user with a local agent socket is served by it, another
// by a container; with the engine down too, the error names both reasons.
func TestAPIAutoPlacement(t *testing.T) {
	local := t.TempDir()
	bu := lookupUser(t, "daemon")
	sock, _ := agenttest.StartServer(t, agent.Config{User: bu.Name, UID: bu.UID, GID: bu.GID, Home: bu.Home,
		Workspace: t.TempDir(), AllowUIDs: []uint32{uint32(os.Getuid())}})
	if err := os.Symlink(sock, filepath.Join(local, "agent-daemon.sock")); err != nil {
		t.Fatal(err)
	}

	h := newAPIHarness(t, config.ModeAuto, nil, local)
	if code, s, body := h.status(h.b.tok); code != 200 || s.Placement != "system" {
		t.Errorf("daemon (local socket) status = %d %s, want placement system", code, body)
	}
	if code, s, body := h.status(h.a.tok); code != 200 || s.Placement != "container" || s.Agent.UID != h.a.UID {
		t.Errorf("nobody (no local socket) status = %d %s, want placement container", code, body)
	}
	if list := h.f.containers(t, h.b.User); len(list) != 0 {
		t.Errorf("daemon, served locally, has containers: %+v", list)
	}

	nobody := filepath.Join(t.TempDir(), "nobody.sock")
	down := newAPIHarness(t, config.ModeAuto, func(c *config.Container) { c.EngineSocket = nobody }, local)
	resp, body := down.do("GET", "/api/v1/status", down.a.tok, "")
	down.expect("auto with no local agent and no engine", resp, body, 503, backend.CodeUnavailable)
	for _, part := range []string{"agent-nobody.sock", nobody} {
		if !strings.Contains(body, part) {
			t.Errorf("503 body %s does not name %s", body, part)
		}
	}
}
