package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/tokens"
)

// harness is a control plane in local mode in front of two real in-process
// agents: one for the current user ("me") and one registered as another
// Linux user ("other"), each with its own workspace, on sockets in
// socket_dir where the router looks for them.
type harness struct {
	t                         testing.TB
	srv                       *Server
	url                       string
	client                    *http.Client
	unix                      *http.Client // over the Unix API socket: identified by peer creds
	store                     *tokens.Store
	me, other                 string
	wsMe, wsOther             string
	tokMe, tokOther, tokAdmin string
	socketDir                 string
	log                       *lockedWriter
}

func otherUser(t testing.TB, me string) *user.User {
	for _, name := range []string{"nobody", "daemon", "bin"} {
		if name == me {
			continue
		}
		if u, err := user.Lookup(name); err == nil {
			return u
		}
	}
	reason := "api tests: need a second user in /etc/passwd (nobody, daemon or bin)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipping)", reason)
	}
	t.Skip(reason)
	return nil
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, socketDir: t.TempDir(), wsMe: t.TempDir(), wsOther: t.TempDir(), log: &lockedWriter{b: &strings.Builder{}}}
	meName, _, err := agent.CurrentUser()
	if err != nil {
		t.Fatal(err)
	}
	h.me = meName
	ou := otherUser(t, meName)
	h.other = ou.Username
	uid, _ := strconv.ParseUint(ou.Uid, 10, 32)
	gid, _ := strconv.ParseUint(ou.Gid, 10, 32)

	sockMe := agenttest.Start(t, h.wsMe)
	sockOther, _ := agenttest.StartServer(t, agent.Config{User: ou.Username, UID: uint32(uid), GID: uint32(gid),
		Home: ou.HomeDir, Workspace: h.wsOther, AllowUIDs: []uint32{uint32(os.Getuid())}})
	h.linkAgent(h.me, sockMe)
	h.linkAgent(h.other, sockOther)

	h.store, err = tokens.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	h.tokMe, _, _ = h.store.Create(h.me, "", false)
	h.tokOther, _, _ = h.store.Create(h.other, "", false)
	h.tokAdmin, _, _ = h.store.Create(h.me, "admin", true)

	router, err := backend.NewRouter(backend.RouterConfig{Mode: config.ModeLocal,
		Local: config.Local{SocketDir: h.socketDir}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(h.log, nil))
	pool := backend.NewPool(router, 2*time.Second, log)
	t.Cleanup(pool.Close)
	h.srv = New(Config{Pool: pool, Users: backend.NewUsers(config.Users{Allow: []string{h.me, h.other}}),
		Tokens: h.store, Log: log, Version: "test", MaxBodyBytes: 1 << 20, AgentTimeout: 5 * time.Second,
		MaxStreamsPerUser: 2})

	ts := httptest.NewServer(h.srv.Handler())
	t.Cleanup(ts.Close)
	h.url, h.client = ts.URL, ts.Client()

	apiSock := filepath.Join(t.TempDir(), "octo.sock")
	ln, err := net.Listen("unix", apiSock)
	if err != nil {
		t.Fatal(err)
	}
	us := httptest.NewUnstartedServer(h.srv.Handler())
	us.Listener.Close()
	us.Listener = ln
	us.Config.ConnContext = ConnContext
	us.Start()
	t.Cleanup(us.Close)
	h.unix = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", apiSock)
	}}}
	return h
}

// linkAgent makes socket_dir/agent-NAME.sock lead to a test agent's socket.
func (h *harness) linkAgent(name, sock string) {
	if err := os.Symlink(sock, filepath.Join(h.socketDir, "agent-"+name+".sock")); err != nil {
		h.t.Fatal(err)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// do sends a request with token tok ("" for none) and returns the response
// with its body read.
func (h *harness) do(method, path, tok string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// want checks a response's status and, for errors, its code.
func want(t testing.TB, what string, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d; body %s", what, resp.StatusCode, status, body)
		return
	}
	if code != "" {
		var e errorJSON
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != code {
			t.Errorf("%s: body %s, want error code %q", what, body, code)
		}
	}
}

func decode[T any](t testing.TB, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}
