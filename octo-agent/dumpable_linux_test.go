package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// nobody is the unprivileged uid these tests run binaries as.
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// sharedDir returns a new directory that nobody can reach (the test's
// temporary directories are 0700).
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// copyMode copies the file from to a new root-owned file to with mode.
func copyMode(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to+".new", mode); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := os.Rename(to+".new", to); err != nil {
		t.Fatal(err)
	}
}

// TestReloadExecuteOnly: an agent running as its user from a root-owned
// 0711 binary (which that user cannot read) reloads: it keeps its old
// binary for a hand-back by an O_PATH descriptor, which needs no read
// permission, and hands back through it when the new binary fails.
func TestReloadExecuteOnly(t *testing.T) {
	needRoot(t, "running a root-owned execute-only agent as nobody")
	dir := sharedDir(t)
	home := filepath.Join(dir, "home")
	for _, d := range []string{home, filepath.Join(dir, "bin")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(home, int(nobody.Uid), int(nobody.Gid)); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin", "octo-agent")
	copyMode(t, agentBin, bin, 0o711)
	fails := filepath.Join(dir, "octo-agent-fails")
	if out, err := exec.Command("go", "build", "-ldflags", "-X 'main.failAdopt=injected adoption failure'", "-o", fails, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sock := filepath.Join(home, "agent.sock")
	cmd := exec.Command(bin, "serve", "--socket", sock, "--workspace", home, "--state-dir", filepath.Join(home, "state"), "--idle-timeout", "0", "--user", "u", "--home", home)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("agent stderr:\n%s", stderr.String())
		}
	})
	dialAgent(t, sock).Close()
	reload := func() (string, error) {
		c := exec.Command(bin, "reload", "--socket", sock)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
		out, err := c.CombinedOutput()
		return string(out), err
	}

	copyMode(t, fails, bin, 0o711)
	if out, err := reload(); err == nil || !strings.Contains(out, "injected adoption failure") {
		t.Errorf("reload to a binary that cannot adopt = %v, %q; want a failure with its reason (and a hand-back)", err, out)
	}
	copyMode(t, agentBin, bin, 0o711)
	if out, err := reload(); err != nil {
		t.Errorf("reload = %v, %q; want success", err, out)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	if exe, err := os.Readlink("/proc/" + pid + "/exe"); err != nil || exe != bin {
		t.Errorf("after the reloads the agent runs %q (%v), want %s", exe, err, bin)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+pid+"/fd", &st); err != nil || st.Uid != 0 {
		t.Errorf("after the reloads /proc/%s/fd is owned by uid %d (%v), want 0: the agent is dumpable", pid, st.Uid, err)
	}
	if c := dialAgent(t, sock); c != nil {
		if info, err := c.Info(ctxT(t)); err != nil || info.PID != cmd.Process.Pid {
			t.Errorf("Info after the reloads = %+v, %v; want the same agent, pid %d", info, err, cmd.Process.Pid)
		}
	}
}
