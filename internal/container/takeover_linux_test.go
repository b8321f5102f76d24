package container

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"octo/internal/backend"
	"octo/internal/config"
)

// Another local user must neither take over a user's agent state nor
// block the agent's start by planting files in its socket directory in
// the window between the runtime clearing it and the agent, in a container
// that takes a while to start, using it. The attacker plants a state dir
// of its own whose lock is a symlink to the user's ~/.bashrc (which an
// agent that trusted it would overwrite with its pid), and junk.
func TestSocketDirTakeover(t *testing.T) {
	bin, base := helperBin(t)
	f := newFixture(t, func(c *config.Container) { c.SocketDir = filepath.Join(base, "containers") })
	u := testUser(t, f.engine)
	const attacker = 23999
	victim := filepath.Join(u.Home, ".bashrc")
	if err := os.WriteFile(victim, []byte("original\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(victim, int(u.UID), int(u.GID))

	for round := range 2 { // the first start, and a later one (after a crash, a reboot)
		stop := filepath.Join(base, "stop")
		os.Remove(stop)
		var out bytes.Buffer
		cmd := helper(bin, attacker, "plant", "OCTO_HELPER_DIR="+filepath.Dir(f.sock(u)),
			"OCTO_HELPER_VICTIM="+victim, "OCTO_HELPER_STOP="+stop)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if round == 1 { // a reboot: the container and /run are gone
			removeUserContainers(t, f.engine, u)
			os.RemoveAll(filepath.Dir(f.sock(u)))
		}
		err := f.rt.Ensure(ctxT(t), u, f.sock(u))
		os.WriteFile(stop, nil, 0o644)
		if werr := cmd.Wait(); werr != nil {
			t.Fatalf("attacker: %v\n%s", werr, out.String())
		}
		if err != nil {
			t.Fatalf("round %d: Ensure while uid %d plants files: %v; want the agent started", round, attacker, err)
		}
		if b, _ := os.ReadFile(victim); string(b) != "original\n" {
			t.Fatalf("round %d: %s now holds %q, want %q: the agent followed a planted lock", round, victim, b, "original\n")
		}
		if got := strings.TrimSpace(out.String()); got != "0" {
			t.Errorf("round %d: uid %d created %s entries in the socket directory, want 0", round, attacker, got)
		}
		c := f.dial(t, u)
		if got := run(t, c, "sh", "-c", "echo hi"); got != "hi\n" {
			t.Errorf("round %d: session output %q, want %q", round, got, "hi\n")
		}
		// The agent's records are where only the user can write.
		sessions := filepath.Join(u.Home, ".local", "state", "octo-agent-container", "sessions")
		entries, err := os.ReadDir(sessions)
		if err != nil || len(entries) == 0 {
			t.Fatalf("round %d: session records in %s: %v, %d entries; want some", round, sessions, err, len(entries))
		}
		for _, p := range []string{sessions, filepath.Dir(sessions)} {
			if fi, err := os.Lstat(p); err != nil || fi.Sys().(*syscall.Stat_t).Uid != u.UID || fi.Mode().Perm()&0o022 != 0 {
				t.Errorf("round %d: %s: %v, want a directory of uid %d writable by it alone", round, p, err, u.UID)
			}
		}
		c.Close()
	}
}

// A workspace others can write to would let them plant the agent's state
// as they could in the socket directory: refused before any container.
func TestStateDirPathMustBeTheUsers(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name  string
		setup func(u backend.User)
		want  string
	}{
		{"workspace writable by all", func(u backend.User) { os.Chmod(u.Home, 0o777) }, "writable by other users"},
		{"workspace of another uid", func(u backend.User) { os.Chown(u.Home, 4444, 4444) }, "owned by uid 4444"},
		{"planted .local", func(u backend.User) {
			os.Mkdir(filepath.Join(u.Home, ".local"), 0o777)
			os.Chown(filepath.Join(u.Home, ".local"), 4444, 4444)
		}, "owned by uid 4444"},
		{"state symlink", func(u backend.User) {
			os.MkdirAll(filepath.Join(u.Home, ".local", "state"), 0o755)
			os.Symlink("/tmp", filepath.Join(u.Home, ".local", "state", "octo-agent-container"))
			os.Lchown(filepath.Join(u.Home, ".local"), int(u.UID), int(u.GID))
			os.Lchown(filepath.Join(u.Home, ".local", "state"), int(u.UID), int(u.GID))
		}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := testUser(t, f.engine)
			tt.setup(u)
			err := f.rt.Ensure(ctxT(t), u, f.sock(u))
			wantErr(t, err, "agent_unavailable", "state dir", tt.want, "chmod go-w")
			if list := f.containers(t, u); len(list) != 0 {
				t.Errorf("containers of %s: %d, want none", u.Name, len(list))
			}
		})
	}
}
