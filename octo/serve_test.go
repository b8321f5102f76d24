package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"octo/internal/agent/agenttest"
	"octo/internal/tokens"
)

// octo serve binds the listeners from the config, tells systemd READY=1 and
// STOPPING=1, serves token callers on TCP and peer-credential callers on the
// 0666 Unix socket, and exits 0 on SIGTERM.
func TestServe(t *testing.T) {
	me, err := currentUser()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sockDir, state := filepath.Join(dir, "agents"), filepath.Join(dir, "state")
	os.Mkdir(sockDir, 0o755)
	if err := os.Symlink(agenttest.Start(t, ""), filepath.Join(sockDir, "agent-"+me.Name+".sock")); err != nil {
		t.Fatal(err)
	}
	store, _ := tokens.Open(state)
	defer store.Close()
	secret, _, _ := store.Create(me.Name, "", false)
	apiSock := filepath.Join(dir, "octo.sock")
	cfg := writeConfig(t, fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\napi_socket = %q\nstate_dir = %q\n[local]\nsocket_dir = %q\n[users]\nallow = [%q]\n",
		apiSock, state, sockDir, me.Name))

	notifyPath := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	logs := &lockedBuf{}
	cmd := exec.Command(os.Args[0], "--", "serve", "--config", cfg)
	cmd.Env = append(os.Environ(), "OCTO_TEST_MAIN=1", "NOTIFY_SOCKET="+notifyPath)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	if got := readNotify(t, notify); got != "READY=1" {
		t.Fatalf("first sd_notify message %q, want READY=1\n%s", got, logs)
	}
	var addr []string
	for i := 0; i < 500 && addr == nil; i++ { // the log arrives through a pipe
		addr = regexp.MustCompile(`name=http addr=(\S+)`).FindStringSubmatch(logs.String())
		time.Sleep(10 * time.Millisecond)
	}
	if addr == nil {
		t.Fatalf("no http listener in the log:\n%s", logs)
	}
	if fi, err := os.Stat(apiSock); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("api socket: %v, mode %v; want 0666", err, fi.Mode())
	}

	tcp := func(method, path, tok string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+addr[1]+path, strings.NewReader(`{"command":["true"]}`))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := tcp("GET", "/api/v1/status", ""); code != 401 {
		t.Errorf("TCP without token: %d %s, want 401", code, body)
	}
	if code, body := tcp("POST", "/api/v1/sessions", secret); code != 201 {
		t.Errorf("TCP start session: %d %s", code, body)
	}
	unix := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", apiSock)
	}}}
	resp, err := unix.Get("http://octo/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Caller    struct{ User, Via string }
		Placement string
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != 200 || st.Caller.User != me.Name || !strings.HasPrefix(st.Caller.Via, "socket") || st.Placement != "system" {
		t.Errorf("status over the socket: %d %+v", resp.StatusCode, st)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if got := readNotify(t, notify); got != "STOPPING=1" {
		t.Errorf("sd_notify on SIGTERM: %q, want STOPPING=1", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("octo serve exited with %v on SIGTERM, want 0\n%s", err, logs)
	}
	if !strings.Contains(logs.String(), `route="POST /api/v1/sessions" path=/api/v1/sessions status=201`) { // Wait has copied all output
		t.Errorf("no request log line for the POST:\n%s", logs)
	}
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("sd_notify: %v", err)
	}
	return string(buf[:n])
}
