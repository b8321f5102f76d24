package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"octo/internal/config"
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
	// The file may be named without --config, as the README's example does.
	if out, err := capture(t, "check-config", good); err != nil || !strings.Contains(out, good+": OK") {
		t.Errorf("check-config FILE: %q %v, want FILE: OK", out, err)
	}
	if _, err := capture(t, "check-config", good, bad); err == nil || !strings.Contains(err.Error(), "one config file") {
		t.Errorf("check-config with two files: %v, want a usage error", err)
	}
	if _, err := capture(t, "check-config", "../testdata/config.example.toml"); err != nil {
		t.Errorf("check-config testdata/config.example.toml: %v", err)
	}
	if out, err := capture(t, "version"); err != nil || !bytes.HasPrefix([]byte(out), []byte("octo ")) {
		t.Errorf("version: %q %v", out, err)
	}
}

// A config file someone named that does not exist is an error for every
// command that reads one, never the defaults (which listen on 0.0.0.0:3000).
func TestNamedMissingConfigIsAnError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nosuch.toml")
	for _, args := range [][]string{
		{"check-config", missing},
		{"check-config", "--config", missing},
		{"serve", "--config", missing},
		{"token", "list", "--config", missing},
	} {
		if _, err := capture(t, args...); !errors.Is(err, config.ErrNoConfig) || !strings.Contains(err.Error(), missing) {
			t.Errorf("octo %v: error %v, want one saying %s does not exist", args, err, missing)
		}
	}
	t.Setenv("OCTO_CONFIG", missing)
	if _, err := capture(t, "serve"); !errors.Is(err, config.ErrNoConfig) {
		t.Errorf("octo serve with $OCTO_CONFIG=%s: %v, want ErrNoConfig", missing, err)
	}
}

// Listing tokens is a read: it creates no state dir.
func TestTokenListCreatesNothing(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	cfg := writeConfig(t, "[server]\nstate_dir = \""+state+"\"\n")
	for _, args := range [][]string{{"token", "list", "--config", cfg}, {"token", "revoke", "abc", "--config", cfg}} {
		capture(t, args...)
		if _, err := os.Lstat(state); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("octo %v created %s (%v)", args, state, err)
		}
	}
	out, err := capture(t, "token", "list", "--config", cfg)
	if err != nil || !strings.HasPrefix(out, "ID") {
		t.Errorf("token list without a state dir = %q, %v; want the empty table", out, err)
	}
}
