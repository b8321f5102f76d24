package container

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestMain doubles as the helper process of TestPrepareSockDirUnprivileged,
// which runs this binary as an unprivileged "octo" uid.
func TestMain(m *testing.M) {
	if dir := os.Getenv("OCTO_HELPER_SOCKDIR"); dir != "" {
		uid, _ := strconv.ParseUint(os.Getenv("OCTO_HELPER_UID"), 10, 32)
		if err := prepareSockDir(dir, "agent.sock", uint32(uid)); err != nil {
			io.WriteString(os.Stderr, "prepare: "+err.Error()+"\n")
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The control plane runs as an unprivileged user: as the owner of the
// sticky socket directory it must still be able to clear what other uids
// left there, without root's powers.
func TestPrepareSockDirUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to run a helper as another uid and plant files of other uids")
	}
	const ctl, usr, other = 23990, 23991, 23992
	base, err := os.MkdirTemp("/var/tmp", "octo-sockdir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	bin := filepath.Join(base, "container.test")
	copyFile(t, os.Args[0], bin)
	root := filepath.Join(base, "containers")
	os.Mkdir(root, 0o755)
	os.Chown(root, ctl, ctl)
	dir := filepath.Join(root, "alice")

	prepare := func() (string, error) {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "OCTO_HELPER_SOCKDIR="+dir, "OCTO_HELPER_UID="+strconv.Itoa(usr))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: ctl, Gid: ctl}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := prepare(); err != nil {
		t.Fatalf("first prepare as uid %d: %v\n%s", ctl, err, out)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != ctl || fi.Mode()&(os.ModePerm|os.ModeSticky) != os.ModeSticky|0o733 {
		t.Fatalf("socket dir: owner %d mode %v, want %d and t-wx-wx (01733)", st.Uid, fi.Mode(), ctl)
	}

	// What the user's agent left (state, a stale socket) and what another
	// uid planted.
	plant := func(name string, uid int, isDir bool) string {
		p := filepath.Join(dir, name)
		if isDir {
			os.Mkdir(p, 0o700)
			os.WriteFile(filepath.Join(p, "record"), nil, 0o600)
			os.Chown(filepath.Join(p, "record"), uid, uid)
		} else {
			os.WriteFile(p, nil, 0o600)
		}
		os.Chown(p, uid, uid)
		return p
	}
	state := plant("state", usr, true)
	stale := plant("agent.sock", usr, false)
	foreign := plant("planted", other, false)
	link := filepath.Join(dir, "link")
	os.Symlink("/etc", link)
	os.Lchown(link, other, other)

	if out, err := prepare(); err != nil {
		t.Fatalf("second prepare as uid %d: %v\n%s", ctl, err, out)
	}
	tests := []struct {
		path string
		kept bool
	}{
		{state, true},
		{filepath.Join(state, "record"), true},
		{stale, false},
		{foreign, false},
		{link, false},
	}
	for _, tt := range tests {
		_, err := os.Lstat(tt.path)
		if kept := err == nil; kept != tt.kept {
			t.Errorf("%s kept = %v, want %v (%v)", filepath.Base(tt.path), kept, tt.kept, err)
		}
	}

	// A socket dir someone else owns is refused, not used.
	os.Chown(dir, other, other)
	out, err := prepare()
	if err == nil || !strings.Contains(out, "not a directory owned by uid") {
		t.Errorf("prepare of a dir owned by uid %d: %v\n%s; want a refusal", other, err, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
