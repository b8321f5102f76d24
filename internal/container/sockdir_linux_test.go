package container

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain doubles as the helper process of the tests that act as other
// uids: it runs this binary with OCTO_HELPER set and a Credential.
func TestMain(m *testing.M) {
	switch os.Getenv("OCTO_HELPER") {
	case "":
		os.Exit(m.Run())
	case "prepare": // the control plane, unprivileged
		uid, _ := strconv.ParseUint(os.Getenv("OCTO_HELPER_UID"), 10, 32)
		if err := prepareSockDir(os.Getenv("OCTO_HELPER_DIR"), "agent.sock", uint32(uid)); err != nil {
			io.WriteString(os.Stderr, "prepare: "+err.Error()+"\n")
			os.Exit(3)
		}
	case "create": // a file at OCTO_HELPER_DIR
		if err := os.WriteFile(os.Getenv("OCTO_HELPER_DIR"), nil, 0o644); err != nil {
			io.WriteString(os.Stderr, err.Error()+"\n")
			os.Exit(4)
		}
	case "plant":
		plantLoop(os.Getenv("OCTO_HELPER_DIR"), os.Getenv("OCTO_HELPER_VICTIM"), os.Getenv("OCTO_HELPER_STOP"))
	}
	os.Exit(0)
}

// plantLoop is another local user attacking the agent socket directory
// dir until the file stop exists: it keeps trying to put there a state dir
// of its own, open to all, whose lock file is a symlink to victim (a file
// of the agent's user) and whose sessions dir it could fill with forged
// records, and a non-empty directory of junk. It prints how many entries it
// managed to create.
func plantLoop(dir, victim, stop string) {
	planted := 0
	try := func(err error) {
		if err == nil {
			planted++
		}
	}
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(100 * time.Microsecond) {
		if _, err := os.Stat(stop); err == nil {
			break
		}
		state := filepath.Join(dir, "state")
		try(os.Mkdir(state, 0o777))
		os.Chmod(state, 0o777)
		try(os.Symlink(victim, filepath.Join(state, "lock")))
		try(os.Mkdir(filepath.Join(state, "sessions"), 0o777))
		junk := filepath.Join(dir, "junk")
		try(os.Mkdir(junk, 0o755))
		try(os.WriteFile(filepath.Join(junk, "x"), nil, 0o644))
	}
	fmt.Println(planted)
}

// helperBin copies the test binary where other uids can run it and
// returns it with a directory everyone may enter, removed after the test.
func helperBin(t *testing.T) (bin, base string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to run helpers as other uids and plant files of other uids")
	}
	base, err := os.MkdirTemp("/var/tmp", "octo-sockdir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	bin = filepath.Join(base, "container.test")
	copyFile(t, os.Args[0], bin)
	return bin, base
}

// helper runs bin in helper mode as uid:uid.
func helper(bin string, uid int, mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append([]string{"OCTO_HELPER=" + mode}, env...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return cmd
}

// The control plane runs as an unprivileged user: as the owner of the
// socket directory it must lock it to the agent's uid and clear it, also
// of what other uids left in it when it was writable by all (mode 01733,
// as earlier versions made it), without root's powers.
func TestPrepareSockDirUnprivileged(t *testing.T) {
	const ctl, usr, other = 23990, 23991, 23992
	bin, base := helperBin(t)
	root := filepath.Join(base, "containers")
	os.Mkdir(root, 0o755)
	os.Chown(root, ctl, ctl)
	dir := filepath.Join(root, "alice")

	prepare := func() (string, error) {
		out, err := helper(bin, ctl, "prepare", "OCTO_HELPER_DIR="+dir, "OCTO_HELPER_UID="+strconv.Itoa(usr)).CombinedOutput()
		return string(out), err
	}
	canCreate := func(uid int, name string) bool {
		return helper(bin, uid, "create", "OCTO_HELPER_DIR="+filepath.Join(dir, name)).Run() == nil
	}
	if out, err := prepare(); err != nil {
		t.Fatalf("first prepare as uid %d: %v\n%s", ctl, err, out)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != ctl || fi.Mode()&(os.ModePerm|os.ModeSticky) != 0o770 {
		t.Fatalf("socket dir: owner %d mode %v, want %d and rwxrwx--- (0700 plus the user's ACL entry)", st.Uid, fi.Mode(), ctl)
	}

	// The directory as earlier versions left it: writable by all, with
	// what the user's agent left (state, a stale socket) and what another
	// uid planted, some of it non-empty and closed to the control plane.
	os.Chmod(dir, 0o733|os.ModeSticky)
	plant := func(name string, uid int, mode os.FileMode, isDir bool) string {
		p := filepath.Join(dir, name)
		if isDir {
			os.Mkdir(p, 0o700)
			os.WriteFile(filepath.Join(p, "record"), nil, 0o600)
			os.Chown(filepath.Join(p, "record"), uid, uid)
		} else {
			os.WriteFile(p, nil, 0o600)
		}
		os.Chown(p, uid, uid)
		os.Chmod(p, mode)
		return p
	}
	state := plant("state", usr, 0o700, true)
	foreign := plant("planted", other, 0o600, false)
	foreignDir := plant("foreign-state", other, 0o777, true)
	link := filepath.Join(dir, "link")
	os.Symlink("/etc", link)
	os.Lchown(link, other, other)
	blocker := plant("agent.sock", other, 0o555, true) // at the socket path

	if out, err := prepare(); err != nil {
		t.Fatalf("second prepare as uid %d: %v\n%s", ctl, err, out)
	}
	tests := []struct {
		path string
		kept bool
	}{
		{filepath.Join(state, "record"), true}, // the user's, non-empty: cannot be removed
		{foreign, false},
		{filepath.Join(foreignDir, "record"), true}, // closed to us, but now unreachable to its owner
		{link, false},
		{blocker, false}, // renamed aside
	}
	for _, tt := range tests {
		_, err := os.Lstat(tt.path)
		if kept := err == nil; kept != tt.kept {
			t.Errorf("%s kept = %v, want %v (%v)", tt.path, kept, tt.kept, err)
		}
	}
	access := []struct {
		uid  int
		name string
		want bool
	}{
		{usr, "agent.sock", true}, // the agent can bind its socket
		{other, "x", false},       // nobody else can plant anything
		{other, "foreign-state/y", false},
		{ctl + 100, "x", false},
	}
	for _, tt := range access {
		if got := canCreate(tt.uid, tt.name); got != tt.want {
			t.Errorf("uid %d can create %s = %v, want %v", tt.uid, tt.name, got, tt.want)
		}
	}

	// A socket dir someone else owns is refused, not used.
	os.Chown(dir, other, other)
	out, err := prepare()
	if err == nil || !strings.Contains(out, "not a directory owned by uid") {
		t.Errorf("prepare of a dir owned by uid %d: %v\n%s; want a refusal", other, err, out)
	}
	// So is a socket_dir everyone may write to.
	os.Chown(dir, ctl, ctl)
	os.Chmod(root, 0o777)
	out, err = prepare()
	if err == nil || !strings.Contains(out, "writable by every user") {
		t.Errorf("prepare under a socket_dir of mode 0777: %v\n%s; want a refusal", err, out)
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
