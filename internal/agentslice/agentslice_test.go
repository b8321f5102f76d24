package agentslice

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestOfSpreadsUsers(t *testing.T) {
	count := map[string]int{}
	const users = 100 * Groups
	for i := range users {
		u := fmt.Sprintf("user%d", i)
		s := Of(u)
		if again := Of(u); again != s {
			t.Fatalf("Of(%q) = %q, then %q: want the same slice every time", u, s, again)
		}
		// A slice named PARENT-minus-".slice" + "-NN.slice" nests in PARENT.
		n, ok := strings.CutPrefix(s, strings.TrimSuffix(Parent, ".slice")+"-")
		if !ok || !strings.HasSuffix(n, ".slice") || len(n) != len("00.slice") {
			t.Fatalf("Of(%q) = %q, want a slice inside %s", u, s, Parent)
		}
		count[s]++
	}
	if got := len(count); got != Groups {
		t.Errorf("%d users fell into %d slices, want all %d", users, got, Groups)
	}
	for s, n := range count {
		if n < 60 || n > 140 {
			t.Errorf("%s holds %d of %d users, want about %d", s, n, users, users/Groups)
		}
	}
}

// A user's slice must not move from one version to the next (an agent
// running when its drop-in changes stays where it started, and operators'
// notes name slices): FNV-1a of the instance, mod 32, computed here
// independently of Of.
func TestOfIsStable(t *testing.T) {
	for _, tc := range []struct{ instance, want string }{
		{"alice", `system-octo\x2dagent-07.slice`},
		{"dev-ops", `system-octo\x2dagent-29.slice`},
		{`dave\x2dx`, `system-octo\x2dagent-23.slice`},
		{"erin@corp.example", `system-octo\x2dagent-03.slice`},
	} {
		if got := Of(tc.instance); got != tc.want {
			t.Errorf("Of(%q) = %q, want %q", tc.instance, got, tc.want)
		}
	}
}

func TestInstances(t *testing.T) {
	etc, run := t.TempDir(), t.TempDir()
	for _, l := range []string{
		etc + "/sockets.target.wants/octo-agent@alice.socket",
		etc + "/sockets.target.wants/octo-agent@bob.socket",
		etc + "/sockets.target.wants/octo.socket",
		etc + "/sockets.target.wants/octo-agentx@eve.socket",
		etc + "/multi-user.target.wants/octo-agent@carol.service",
		etc + "/multi-user.target.wants/octo-agent@alice.service", // alice twice
		etc + "/multi-user.target.wants/octo-agent@.service",      // no instance
		etc + "/multi-user.target.wants/octo-agent@a b.socket",    // not a unit name
		etc + "/multi-user.target.wants/octo-agent@d.timer",
		run + "/sockets.target.requires/octo-agent@dave\\x2dx.socket",
		etc + "/sockets.target.wants/octo-agent@erin@corp.example.socket",
		etc + "/octo-agent@frank.socket", // not enabled: no .wants
	} {
		if err := os.MkdirAll(filepath.Dir(l), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/etc/systemd/system/octo-agent@.socket", l); err != nil {
			t.Fatal(err)
		}
	}
	// A file named like a directory of links is not one.
	if err := os.WriteFile(filepath.Join(etc, "stray.wants"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Instances(etc, run, filepath.Join(etc, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice", "bob", "carol", `dave\x2dx`, "erin@corp.example"}; !slices.Equal(got, want) {
		t.Errorf("Instances = %q, want %q", got, want)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, []string{"alice", `dave\x2dx`}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"octo-agent@alice.service.d/" + DropIn, "[Service]\nSlice=" + Of("alice") + "\n"},
		{"octo-agent@alice.socket.d/" + DropIn, "[Unit]\nWants=" + Of("alice") + "\n"},
		{`octo-agent@dave\x2dx.service.d/` + DropIn, "[Service]\nSlice=" + Of(`dave\x2dx`) + "\n"},
		{`octo-agent@dave\x2dx.socket.d/` + DropIn, "[Unit]\nWants=" + Of(`dave\x2dx`) + "\n"},
	} {
		got, err := os.ReadFile(filepath.Join(dir, tc.path))
		if err != nil {
			t.Errorf("read %s: %v", tc.path, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s = %q, want %q", tc.path, got, tc.want)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Errorf("wrote %d entries, want 4 drop-in directories", len(ents))
	}
}

// BenchmarkGenerate is the generator's work on every daemon-reload for
// 2,000 enabled users: find them, write their drop-ins. It writes to
// /dev/shm where there is one: systemd's output directory is on /run, a
// tmpfs.
func BenchmarkGenerate(b *testing.B) {
	etc := b.TempDir()
	wants := filepath.Join(etc, "sockets.target.wants")
	os.MkdirAll(wants, 0o755)
	for i := range 2000 {
		os.Symlink("../octo-agent@.socket", filepath.Join(wants, fmt.Sprintf("octo-agent@user%d.socket", i)))
	}
	parent := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		parent = "/dev/shm"
	}
	for b.Loop() {
		out, err := os.MkdirTemp(parent, "agentslice-bench")
		if err != nil {
			b.Fatal(err)
		}
		users, err := Instances(etc)
		if err != nil || len(users) != 2000 {
			b.Fatalf("Instances: %d users, %v", len(users), err)
		}
		if err := Write(out, users); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
}

// A directory that cannot be read is reported, and the rest still counted:
// the generator places every agent it can.
func TestInstancesReadsPastABadDirectory(t *testing.T) {
	etc := t.TempDir()
	if err := os.Symlink("loop.wants", filepath.Join(etc, "loop.wants")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(etc, "sockets.target.wants"), 0o755)
	if err := os.Symlink("../octo-agent@.socket", filepath.Join(etc, "sockets.target.wants", "octo-agent@alice.socket")); err != nil {
		t.Fatal(err)
	}
	got, err := Instances(etc)
	if err == nil || !strings.Contains(err.Error(), "loop.wants") {
		t.Errorf("err = %v, want one naming loop.wants", err)
	}
	if want := []string{"alice"}; !slices.Equal(got, want) {
		t.Errorf("Instances = %q, want %q", got, want)
	}
}
