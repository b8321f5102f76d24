package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestMain doubles as the octo binary: with OCTO_TEST_MAIN=1 it runs the
// command line in its arguments. OCTO_TEST_LISTEN_PID=1 sets LISTEN_PID to
// this process, as systemd does between fork and exec.
func TestMain(m *testing.M) {
	if os.Getenv("OCTO_TEST_MAIN") == "1" {
		if os.Getenv("OCTO_TEST_LISTEN_PID") == "1" {
			os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		}
		args := os.Args[1:]
		for i, a := range args { // skip the test flags before "--"
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		os.Args = append([]string{"octo"}, args...)
		main()
		return
	}
	os.Exit(m.Run())
}

// capture runs the command line in-process and returns stdout and the error.
func capture(t *testing.T, args ...string) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	err = run(context.Background(), args, slog.New(slog.DiscardHandler))
	w.Close()
	os.Stdout = old
	return <-done, err
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTokenCommands(t *testing.T) {
	state := t.TempDir()
	me, err := currentUser()
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "[server]\nstate_dir = \""+state+"\"\n[users]\nallow = [\""+me.Name+"\"]\n")
	t.Setenv("OCTO_CONFIG", cfg)

	out, err := capture(t, "token", "create", me.Name, "--name", "laptop")
	secret := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(secret, "octo_") || strings.Contains(secret, "\n") {
		t.Fatalf("token create printed %q, %v; want just the token", out, err)
	}
	out, err = capture(t, "token", "list")
	if err != nil || !strings.Contains(out, me.Name) || !strings.Contains(out, "laptop") || strings.Contains(out, secret[5:]) {
		t.Errorf("token list = %q, %v; want the token's user and name, never its secret", out, err)
	}
	fields := strings.Fields(strings.Split(out, "\n")[1])
	if _, err := capture(t, "token", "revoke", fields[0]); err != nil {
		t.Errorf("revoke %s: %v", fields[0], err)
	}
	if out, _ := capture(t, "token", "list"); strings.Contains(out, "laptop") {
		t.Errorf("revoked token still listed: %q", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "create", "no-such-user-octo"}, "unknown user"},
		{[]string{"token", "create"}, "one USER"},
		{[]string{"token", "revoke", "ffffffffffff"}, "no such token"},
		{[]string{"token", "frobnicate"}, "unknown token command"},
		{[]string{"token", "create", "daemon"}, "not served"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"serve", "extra"}, "no arguments"},
	} {
		if _, err := capture(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("octo %v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, "[backend]\nmode = \"local\"\n")
	if out, err := capture(t, "check-config", "--config", good); err != nil || !strings.Contains(out, "OK") {
		t.Errorf("check-config good: %q %v", out, err)
	}
	bad := writeConfig(t, "[server]\nlisten = \"x\"\nlisen = 1\n")
	if _, err := capture(t, "check-config", "--config", bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "server.lisen") {
		t.Errorf("check-config bad: %v, want an error naming the file and the key", err)
	}
	missing := filepath.Join(t.TempDir(), "none.toml")
	if out, err := capture(t, "check-config", "--config", missing); err != nil || !strings.Contains(out, "defaults") {
		t.Errorf("check-config missing: %q %v", out, err)
	}
	if out, err := capture(t, "version"); err != nil || !bytes.HasPrefix([]byte(out), []byte("octo ")) {
		t.Errorf("version: %q %v", out, err)
	}
}
