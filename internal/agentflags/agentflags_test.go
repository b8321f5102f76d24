package agentflags

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	o, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.SocketMode != 0o600 || o.IdleTimeout != 10*time.Minute || o.MaxSessions != 0 {
		t.Errorf("defaults: mode %o, idle %v, max sessions %d; want 600, 10m, 0", o.SocketMode, o.IdleTimeout, o.MaxSessions)
	}
	o, err = Parse([]string{"--socket-mode", "0660", "--allow-user", "octo, 42", "--allow-user=bob", "--output-cap", "1M", "--idle-timeout", "0"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.AllowUsers, []string{"octo", "42", "bob"}; !slices.Equal(got, want) {
		t.Errorf("allow users = %q, want %q", got, want)
	}
	if o.SocketMode != 0o660 || o.OutputCap != 1<<20 || o.IdleTimeout != 0 {
		t.Errorf("mode %o, output cap %d, idle %v; want 660, 1048576, 0", o.SocketMode, o.OutputCap, o.IdleTimeout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--socket-mode", "999"}, "octal"},
		{[]string{"--output-budget", "lots"}, "invalid size"},
		{[]string{"--idle-timeout", "-1s"}, "must not be negative"},
		{[]string{"--max-sessions", "-1"}, "must not be negative"},
		{[]string{"--state-dir", "state"}, `"state" must be absolute`},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	} {
		if _, err := Parse(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	home := t.TempDir()
	o := &Options{User: "someone", Home: home, IdleTimeout: time.Second}
	t.Setenv("STATE_DIRECTORY", "")
	t.Setenv("XDG_STATE_HOME", "")
	cfg, err := o.Config(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "someone" || cfg.Home != home || cfg.UID != uint32(os.Getuid()) || cfg.IdleTimeout != time.Second {
		t.Errorf("config = user %q home %q uid %d idle %v; want the flags' and this process's", cfg.User, cfg.Home, cfg.UID, cfg.IdleTimeout)
	}
	if want := filepath.Join(home, ".local", "state", "octo-agent"); cfg.StateDir != want {
		t.Errorf("state dir = %q, want %q", cfg.StateDir, want)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{User: "someone", Home: "rel"}, `home "rel" must be an absolute path`},
		{Options{User: "someone", Home: home, AllowUsers: []string{"no-such-user-octo"}}, "--allow-user"},
	} {
		if _, err := tc.o.Config(nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Config(%+v) = %v, want an error saying %q", tc.o, err, tc.want)
		}
	}
}

func TestDefaultStateDir(t *testing.T) {
	for _, tc := range []struct {
		stateDirectory, xdg, want string
	}{
		{"/var/lib/octo-agent/alice:/other", "/x", "/var/lib/octo-agent/alice"},
		{"", "/x/state", "/x/state/octo-agent"},
		{"", "relative", "/home/a/.local/state/octo-agent"},
		{"", "", "/home/a/.local/state/octo-agent"},
	} {
		t.Setenv("STATE_DIRECTORY", tc.stateDirectory)
		t.Setenv("XDG_STATE_HOME", tc.xdg)
		if got := DefaultStateDir("/home/a"); got != tc.want {
			t.Errorf("STATE_DIRECTORY=%q XDG_STATE_HOME=%q: got %q, want %q", tc.stateDirectory, tc.xdg, got, tc.want)
		}
	}
}
