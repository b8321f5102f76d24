package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestExecuteOnlyNotDumpableFromExec: a binary that its user may execute
// but not read (root's, mode 0711, as units/install.sh installs octo-agent)
// is non-dumpable from execve on, before its first instruction, so no
// process of that user can take the descriptors systemd passed it (fd 3,
// the listening socket) in the moment before main's prctl. A 0755 copy is
// dumpable then: the mode is what closes that window. Each binary runs as
// nobody with a listening socket at fd 3; the agent is stopped right after
// its execve (PTRACE_TRACEME), sleep (which never calls prctl) is left
// running.
func TestExecuteOnlyNotDumpableFromExec(t *testing.T) {
	needRoot(t, "running root-owned execute-only binaries as nobody")
	dir := sharedDir(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "listen.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	// Yama's ptrace_scope 2 and 3 refuse pidfd_getfd without CAP_SYS_PTRACE
	// whatever the dumpable flag: then only /proc/PID/fd's owner tells.
	yama, _ := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	getfdTells := strings.TrimSpace(string(yama)) < "2"

	for _, tc := range []struct {
		name       string
		from       string
		mode       os.FileMode
		args       []string
		stopAtExec bool
		wantDump   bool
	}{
		{"octo-agent 0711, at exec", agentBin, 0o711, []string{"version"}, true, false},
		{"octo-agent 0755, at exec", agentBin, 0o755, []string{"version"}, true, true},
		{"sleep 0711, running", sleep, 0o711, []string{"600"}, false, false},
		{"sleep 0755, running", sleep, 0o755, []string{"600"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(dir, strings.NewReplacer(" ", "-", ",", "").Replace(tc.name))
			installMode(t, tc.from, bin, tc.mode)
			pid := startStopped(t, bin, tc.args, lf, tc.stopAtExec)

			var st unix.Stat_t
			if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/fd", &st); err != nil {
				t.Fatal(err)
			}
			wantOwner := uint32(0)
			if tc.wantDump {
				wantOwner = nobody.Uid
			}
			if st.Uid != wantOwner {
				t.Errorf("/proc/%d/fd is owned by uid %d, want %d (dumpable: %v)", pid, st.Uid, wantOwner, tc.wantDump)
			}
			err := getfdAs(pid, nobody)
			switch {
			case !tc.wantDump && !errors.Is(err, unix.EPERM):
				t.Errorf("pidfd_getfd(fd 3) as nobody = %v, want EPERM", err)
			case tc.wantDump && getfdTells && err != nil:
				t.Errorf("pidfd_getfd(fd 3) as nobody = %v, want the listening socket (the dumpable contrast)", err)
			}
		})
	}
}

// startStopped runs bin as nobody with f at fd 3 and returns its pid once
// its execve is done: stopped by PTRACE_TRACEME's SIGTRAP at exec, or
// running with its new name. The process is killed when the test ends.
func startStopped(t *testing.T, bin string, args []string, f *os.File, stopAtExec bool) int {
	t.Helper()
	type started struct {
		pid int
		err error
	}
	ch := make(chan started, 1)
	done := make(chan struct{})
	// A tracee is waited for by its tracer thread: start, wait and reap on
	// one thread that nothing else runs on.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		pid, err := syscall.ForkExec(bin, append([]string{bin}, args...), &syscall.ProcAttr{
			Env:   []string{"PATH=/usr/bin:/bin"},
			Files: []uintptr{0, 1, 2, f.Fd()},
			Sys:   &syscall.SysProcAttr{Credential: nobody, Ptrace: stopAtExec},
		})
		if err == nil && stopAtExec {
			var ws syscall.WaitStatus
			if _, err = syscall.Wait4(pid, &ws, 0, nil); err == nil && (!ws.Stopped() || ws.StopSignal() != syscall.SIGTRAP) {
				err = errors.New("not stopped at exec: " + strconv.Itoa(int(ws)))
			}
		}
		ch <- started{pid, err}
		<-done
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
			syscall.Wait4(pid, nil, 0, nil)
		}
	}()
	s := <-ch
	t.Cleanup(func() { close(done) })
	if s.err != nil {
		t.Fatalf("start %s: %v", bin, s.err)
	}
	if !stopAtExec {
		// The new name is set after the dumpable flag, in the same execve.
		name := filepath.Base(bin)[:min(15, len(filepath.Base(bin)))]
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(s.pid) + "/comm")
			if strings.TrimSpace(string(comm)) == name {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has not executed after 5s (comm %q)", bin, comm)
			}
		}
	}
	return s.pid
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
	installMode(t, agentBin, bin, 0o711)
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

	installMode(t, fails, bin, 0o711)
	if out, err := reload(); err == nil || !strings.Contains(out, "injected adoption failure") {
		t.Errorf("reload to a binary that cannot adopt = %v, %q; want a failure with its reason (and a hand-back)", err, out)
	}
	installMode(t, agentBin, bin, 0o711)
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
