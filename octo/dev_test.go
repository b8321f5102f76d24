package main

import (
	"encoding/json"
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
)

// octo dev serves the invoking user from an in-process agent over a real
// socket: the token it writes works, the workspace is the one given, and it
// cleans up its private runtime dir on exit.
func TestDev(t *testing.T) {
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "hello.txt"), []byte("hi from the workspace\n"), 0o644)
	tokFile := filepath.Join(t.TempDir(), "token")
	out := &lockedBuf{}
	cmd := exec.Command(os.Args[0], "--", "dev", "--listen", "127.0.0.1:0", "--workspace", ws, "--token-file", tokFile)
	cmd.Env = append(os.Environ(), "OCTO_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	var m []string
	for i := 0; i < 500 && m == nil; i++ {
		m = regexp.MustCompile(`curl -H "Authorization: Bearer \$OCTO_TOKEN" (http://\S+)/api/v1/status`).FindStringSubmatch(out.String())
		time.Sleep(10 * time.Millisecond)
	}
	if m == nil {
		t.Fatalf("octo dev printed no curl line:\n%s", out)
	}
	tok, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(tokFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(out.String(), "export OCTO_TOKEN="+strings.TrimSpace(string(tok))) {
		t.Errorf("the printed token is not the one in --token-file:\n%s", out)
	}
	get := func(path string) (int, []byte) {
		req, _ := http.NewRequest("GET", m[1]+path, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := get("/api/v1/status")
	var st struct {
		Mode, Placement string
		Agent           struct{ Workspace string }
	}
	json.Unmarshal(body, &st)
	if code != 200 || st.Mode != "dev" || st.Placement != "dev" || st.Agent.Workspace != ws {
		t.Errorf("dev status: %d %s; want mode and placement dev, workspace %s", code, body, ws)
	}
	if code, body := get("/api/v1/files/hello.txt"); code != 200 || string(body) != "hi from the workspace\n" {
		t.Errorf("dev file GET: %d %q", code, body)
	}
	runDir := regexp.MustCompile(`--unix-socket (\S+)/octo.sock`).FindStringSubmatch(out.String())
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("octo dev exited with %v on SIGINT, want 0\n%s", err, out)
	}
	if runDir == nil {
		t.Fatalf("no unix socket line:\n%s", out)
	}
	if _, err := os.Stat(runDir[1]); err == nil {
		t.Errorf("runtime dir %s left behind", runDir[1])
	}
}

// With its port taken, octo dev names the flag to change (it has no config
// file to blame) and starts nothing it then has to stop.
func TestDevPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cmd := exec.Command(os.Args[0], "--", "dev", "--listen", busy.Addr().String(), "--workspace", t.TempDir())
	cmd.Env = append(os.Environ(), "OCTO_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("octo dev on a busy port succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "--listen") || !strings.Contains(string(out), "address already in use") {
		t.Errorf("octo dev on a busy port said:\n%s\nwant the cause and the --listen flag", out)
	}
	for _, bad := range []string{"server.listen", "reason=signal", "agent serving"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("octo dev on a busy port printed %q:\n%s", bad, out)
		}
	}
}
