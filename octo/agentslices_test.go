package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"octo/internal/agentslice"
)

func TestAgentSlicesCmd(t *testing.T) {
	etc := t.TempDir()
	wants := filepath.Join(etc, "sockets.target.wants")
	os.MkdirAll(wants, 0o755)
	if err := os.Symlink("../octo-agent@.socket", filepath.Join(wants, "octo-agent@alice.socket")); err != nil {
		t.Fatal(err)
	}
	old := enableDirs
	enableDirs = []string{etc, filepath.Join(etc, "no-such-dir")}
	t.Cleanup(func() { enableDirs = old })

	for _, args := range [][]string{nil, {"a", "b"}, {"a", "b", "c", "d"}} {
		if err := run(t.Context(), append([]string{"agent-slices"}, args...), nil); !errors.Is(err, errUsage) {
			t.Errorf("octo agent-slices %q: err = %v, want a usage error", args, err)
		}
	}
	// systemd runs a generator with three directories; it writes to the first.
	out := t.TempDir()
	if err := run(t.Context(), []string{"agent-slices", out, t.TempDir(), t.TempDir()}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(out, "octo-agent@alice.service.d", agentslice.DropIn))
	if want := "[Service]\nSlice=" + agentslice.Of("alice") + "\n"; err != nil || string(got) != want {
		t.Errorf("alice's drop-in = %q (%v), want %q", got, err, want)
	}
}
