package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"octo/internal/agent"
)

// needRoot skips (or, with CI=true, fails) a test that needs root.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s needs root (CI=true: not skipping)", why)
	}
	t.Skipf("%s: needs root", why)
}

// TestStateDirUnsafe refuses state and sessions dirs that someone else
// could change: wrong owner, group or other writable, symlinks.
func TestStateDirUnsafe(t *testing.T) {
	needRoot(t, "chown to another uid")
	tests := []struct {
		name  string
		setup func(t *testing.T, state string) (bad string)
		want  string
	}{
		{"state owned by nobody", func(t *testing.T, state string) string {
			must(t, os.Mkdir(state, 0o700))
			must(t, os.Chown(state, 65534, 65534))
			return state
		}, "owned by uid 65534"},
		{"state group writable", func(t *testing.T, state string) string {
			must(t, os.Mkdir(state, 0o700))
			must(t, os.Chmod(state, 0o770))
			return state
		}, "writable by group or others"},
		{"state other writable", func(t *testing.T, state string) string {
			must(t, os.Mkdir(state, 0o700))
			must(t, os.Chmod(state, 0o703))
			return state
		}, "writable by group or others"},
		{"state is a symlink", func(t *testing.T, state string) string {
			real := state + ".real"
			must(t, os.Mkdir(real, 0o700))
			must(t, os.Symlink(real, state))
			return state
		}, "is a symlink"},
		{"sessions is a symlink", func(t *testing.T, state string) string {
			must(t, os.Mkdir(state, 0o700))
			must(t, os.Mkdir(state+".other", 0o700))
			must(t, os.Symlink(state+".other", filepath.Join(state, "sessions")))
			return filepath.Join(state, "sessions")
		}, "is a symlink"},
		{"sessions owned by nobody", func(t *testing.T, state string) string {
			must(t, os.MkdirAll(filepath.Join(state, "sessions"), 0o700))
			must(t, os.Chown(filepath.Join(state, "sessions"), 65534, 65534))
			return filepath.Join(state, "sessions")
		}, "owned by uid 65534"},
		{"sessions group writable", func(t *testing.T, state string) string {
			must(t, os.MkdirAll(filepath.Join(state, "sessions"), 0o700))
			must(t, os.Chmod(filepath.Join(state, "sessions"), 0o720))
			return filepath.Join(state, "sessions")
		}, "writable by group or others"},
		{"sessions is a file", func(t *testing.T, state string) string {
			must(t, os.Mkdir(state, 0o700))
			must(t, os.WriteFile(filepath.Join(state, "sessions"), nil, 0o600))
			return filepath.Join(state, "sessions")
		}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			bad := tt.setup(t, cfg.StateDir)
			_, err := agent.New(cfg)
			if !errors.Is(err, agent.ErrStateDirUnsafe) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want ErrStateDirUnsafe naming %s and saying %q", err, bad, tt.want)
			}
		})
	}
}

// TestStateDirPlantedSymlinks: a lock or session record planted as a symlink
// is not followed: the lock's target keeps its content, the record is not
// loaded.
func TestStateDirPlantedSymlinks(t *testing.T) {
	cfg := testConfig(t)
	victim := filepath.Join(t.TempDir(), "bashrc")
	must(t, os.WriteFile(victim, []byte("alias ls='ls -F'\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(cfg.StateDir, "sessions"), 0o700))
	must(t, os.Symlink(victim, filepath.Join(cfg.StateDir, "lock")))
	if _, err := agent.New(cfg); err == nil {
		t.Error("New with a symlink lock succeeded, want an error")
	}
	if b, _ := os.ReadFile(victim); string(b) != "alias ls='ls -F'\n" {
		t.Errorf("lock symlink target now reads %q; it was followed", b)
	}

	// A record planted as a symlink to a valid record elsewhere.
	must(t, os.Remove(filepath.Join(cfg.StateDir, "lock")))
	rec := filepath.Join(t.TempDir(), "rec.json")
	must(t, os.WriteFile(rec, []byte(`{"ID":"0123456789abcdef","State":"exited","Argv":["planted"],"OutputCap":100}`), 0o600))
	must(t, os.Symlink(rec, filepath.Join(cfg.StateDir, "sessions", "0123456789abcdef.json")))
	c, stop := runServer(t, cfg)
	defer stop()
	list, err := c.Sessions(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("sessions = %+v, want none: a symlinked record was loaded", list)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
