package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// install puts the binary from into path the way install(1) does: a new
// file renamed over the old one (the running agent keeps the old inode).
func install(t *testing.T, from, path string) { installMode(t, from, path, 0o755) }

// installMode is install with mode (past the umask).
func installMode(t *testing.T, from, path string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path+".new", mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// outputUntil reads a session's output from 0 until it holds want.
func outputUntil(t *testing.T, c *agentrpc.Client, id, want string) string {
	t.Helper()
	var out []byte
	var off int64
	for deadline := time.Now().Add(15 * time.Second); !bytes.Contains(out, []byte(want)); {
		if time.Now().After(deadline) {
			t.Fatalf("session %s: output lacks %q after 15s; got %q", id, want, out)
		}
		o, err := c.ReadOutput(ctxT(t), agentrpc.OutputRequest{ID: id, Offset: off, Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Data...)
		off = o.Next
	}
	return string(out)
}

// sessionFDs returns the descriptors a new session has (ls's own among them).
func sessionFDs(t *testing.T, c *agentrpc.Client) string {
	t.Helper()
	s, err := c.Start(ctxT(t), agentrpc.StartRequest{Argv: []string{"sh", "-c", "ls /proc/self/fd; echo end"}})
	if err != nil {
		t.Fatal(err)
	}
	out := outputUntil(t, c, s.ID, "end\n")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got, err := c.Session(ctxT(t), s.ID); err != nil || got.State != agentrpc.StateRunning || time.Now().After(deadline) {
			break // ended: it counts as running no more
		}
	}
	return out
}

// consecutive checks that out's complete lines are 1, 2, 3, ...
func consecutive(t *testing.T, out string) int {
	t.Helper()
	lines := strings.Split(out[:strings.LastIndexByte(out, '\n')], "\n")
	for i, l := range lines {
		if n, err := strconv.Atoi(l); err != nil || n != i+1 {
			t.Fatalf("counter line %d is %q, want %d: output lost or repeated", i+1, l, i+1)
		}
	}
	return len(lines)
}

// clientLoop calls the agent until stop is closed, reconnecting after a
// lost connection and retrying the call once, as octo's pool does for
// repeatable calls. It returns the calls made and the failures.
func clientLoop(sock, id string, stop <-chan struct{}) (calls, failed *atomic.Int64, errs *[]error, done *sync.WaitGroup) {
	calls, failed, errs, done = new(atomic.Int64), new(atomic.Int64), new([]error), new(sync.WaitGroup)
	done.Add(1)
	go func() {
		defer done.Done()
		var c *agentrpc.Client
		call := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			for attempt := 0; attempt < 2; attempt++ {
				if c == nil {
					if c, err = agentrpc.Dial(ctx, "unix", sock); err != nil {
						return err
					}
				}
				if _, err = c.Info(ctx); err == nil {
					_, err = c.Session(ctx, id)
				}
				if !errors.Is(err, agentrpc.ErrConnLost) && !errors.Is(err, agentrpc.ErrReloading) {
					return err
				}
				c.Close()
				c = nil
			}
			return err
		}
		for {
			select {
			case <-stop:
				if c != nil {
					c.Close()
				}
				return
			default:
			}
			calls.Add(1)
			if err := call(); err != nil {
				failed.Add(1)
				*errs = append(*errs, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return calls, failed, errs, done
}

// TestReload replaces the agent's binary and reloads it: the same process
// runs the new version with its sessions (same pids, no output byte lost or
// repeated, tty input still echoed), no call fails meanwhile, and a broken
// binary leaves the agent serving.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	v2 := filepath.Join(dir, "octo-agent-v2")
	if out, err := exec.Command("go", "build", "-ldflags", "-X octo/internal/agent.Version=v2-reload", "-o", v2, ".").CombinedOutput(); err != nil {
		t.Fatalf("build v2: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "bin", "octo-agent")
	os.Mkdir(filepath.Dir(bin), 0o755)
	install(t, agentBin, bin)
	sock := filepath.Join(dir, "agent.sock")
	notify, msgs := notifyListener(t, dir)
	ws := filepath.Join(dir, "ws")
	os.Mkdir(ws, 0o755)
	cmd := exec.Command(bin, "serve", "--socket", sock, "--workspace", ws, "--state-dir", filepath.Join(dir, "state"), "--idle-timeout", "0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "NOTIFY_SOCKET=" + notify}
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("agent stderr:\n%s", stderr.String())
		}
	})
	expectMsg(t, msgs, "READY=1")
	c := dialAgent(t, sock)
	ctx := ctxT(t)
	counter, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", `i=0; while :; do i=$((i+1)); echo $i; sleep 0.005; done`}})
	if err != nil {
		t.Fatal(err)
	}
	tty, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", `while read l; do echo "got $l"; done`}, TTY: true})
	if err != nil {
		t.Fatal(err)
	}
	outputUntil(t, c, counter.ID, "\n20\n")

	fdsBefore := sessionFDs(t, c)
	install(t, v2, bin)
	stop := make(chan struct{})
	calls, failed, errs, loop := clientLoop(sock, counter.ID, stop)
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	out, err := exec.Command(bin, "reload", "--socket", sock).CombinedOutput()
	took := time.Since(t0)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	loop.Wait()
	if err != nil || !strings.Contains(string(out), "v2-reload") {
		t.Fatalf("reload = %v, %q; want the new version serving", err, out)
	}
	t.Logf("reload took %v; the client loop made %d calls", took, calls.Load())
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "agent reloaded") {
			t.Log(l)
		}
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d calls failed during the reload: %v", n, calls.Load(), *errs)
	}
	expectPrefix(t, msgs, "RELOADING=1\nMONOTONIC_USEC=")
	expectMsg(t, msgs, "READY=1")

	c2 := dialAgent(t, sock)
	info, err := c2.Info(ctx)
	if err != nil || info.Version != "v2-reload" || info.PID != cmd.Process.Pid || info.RunningSessions != 2 {
		t.Errorf("Info after reload = %+v, %v; want version v2-reload, pid %d, 2 sessions", info, err, cmd.Process.Pid)
	}
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe"); exe != bin {
		t.Errorf("agent runs %q, want the new %s", exe, bin)
	}
	for _, s := range []agentrpc.Session{counter, tty} {
		if got, err := c2.Session(ctx, s.ID); err != nil || got.PID != s.PID || got.State != agentrpc.StateRunning {
			t.Errorf("session after reload = %+v, %v; want pid %d running", got, err, s.PID)
		}
	}
	// A session started by the new binary inherits none of the descriptors
	// handed over (the listening socket above all): the same as before.
	if after := sessionFDs(t, c2); after != fdsBefore {
		t.Errorf("a session started after the reload has descriptors %q, before it %q", after, fdsBefore)
	}
	n := consecutive(t, outputUntil(t, c2, counter.ID, "\n"+strconv.Itoa(20+int(took/(5*time.Millisecond))+20)+"\n"))
	if err := c2.WriteInput(ctx, tty.ID, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	outputUntil(t, c2, tty.ID, "got hello")

	// A broken binary: the reload fails with the reason, the agent serves on.
	if err := os.WriteFile(bin+".new", []byte("#!/bin/sh\necho not an agent\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Rename(bin+".new", bin)
	out, err = exec.Command(v2, "reload", "--socket", sock).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot take over") {
		t.Errorf("reload to a broken binary = %v, %q; want a failure saying it cannot take over", err, out)
	}
	if !strings.Contains(stderr.String(), "reload failed") {
		t.Errorf("agent log lacks the failed reload")
	}
	info, err = c2.Info(ctx)
	if err != nil || info.Version != "v2-reload" || info.RunningSessions != 2 {
		t.Errorf("Info after a failed reload = %+v, %v; want v2-reload with 2 sessions", info, err)
	}
	if m := consecutive(t, outputUntil(t, c2, counter.ID, "\n"+strconv.Itoa(n+40)+"\n")); m < n+40 {
		t.Errorf("counter at %d after the failed reload, want past %d", m, n+40)
	}

	// A binary that runs but fails while adopting the sessions hands them
	// back to the old binary, which serves on.
	v3 := filepath.Join(dir, "octo-agent-v3")
	if out, err := exec.Command("go", "build", "-ldflags", "-X octo/internal/agent.Version=v3 -X 'main.failAdopt=injected adoption failure'", "-o", v3, ".").CombinedOutput(); err != nil {
		t.Fatalf("build v3: %v\n%s", err, out)
	}
	install(t, v3, bin)
	out, err = exec.Command(v2, "reload", "--socket", sock).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "injected adoption failure") {
		t.Errorf("reload to a binary that cannot adopt = %v, %q; want a failure with its reason", err, out)
	}
	info, err = c2.Info(ctx)
	if err == nil {
		t.Errorf("old connection survived a hand-over and back: %+v", info)
	}
	c3 := dialAgent(t, sock)
	info, err = c3.Info(ctx)
	if err != nil || info.Version != "v2-reload" || info.PID != cmd.Process.Pid || info.RunningSessions != 2 {
		t.Errorf("Info after a hand-back = %+v, %v; want v2-reload, pid %d, 2 sessions", info, err, cmd.Process.Pid)
	}
	if m := consecutive(t, outputUntil(t, c3, counter.ID, "\n"+strconv.Itoa(n+80)+"\n")); m < n+80 {
		t.Errorf("counter at %d after the hand-back, want past %d", m, n+80)
	}
	if err := c3.WriteInput(ctx, tty.ID, []byte("again\n")); err != nil {
		t.Fatal(err)
	}
	outputUntil(t, c3, tty.ID, "got again")
	c2 = c3

	if s, err := c2.Stop(ctx, agentrpc.StopRequest{ID: counter.ID}); err != nil || s.State != agentrpc.StateExited {
		t.Errorf("Stop after reloads = %+v, %v", s, err)
	}
}

func expectPrefix(t *testing.T, msgs <-chan string, prefix string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			if strings.HasPrefix(m, prefix) {
				return
			}
		case <-deadline:
			t.Fatalf("no notification starting %q within 10s", prefix)
		}
	}
}

// syncBuf is a bytes.Buffer safe for concurrent use.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNotDumpable: the user's other processes can neither ptrace the agent
// nor take its descriptors (pidfd_getfd needs ptrace access).
func TestNotDumpable(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	var cred *syscall.Credential
	if os.Getuid() == 0 {
		// Root may ptrace anyone: run the agent as nobody, and try as nobody.
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		os.Chmod(filepath.Dir(dir), 0o755)
		os.Chown(dir, 65534, 65534)
	}
	p := startAgentAs(t, cred, nil, []string{"HOME=" + dir}, "serve", "--socket", sock, "--workspace", dir, "--state-dir", filepath.Join(dir, "state"), "--idle-timeout", "0", "--user", "u", "--home", dir)
	dialAgent(t, sock)
	pid := p.cmd.Process.Pid
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/fd", &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 {
		t.Errorf("/proc/%d/fd is owned by uid %d, want 0: the agent is dumpable", pid, st.Uid)
	}
	// As the agent's user, try to take its listening socket (fd 3).
	if err := getfdAs(pid, cred); err == nil {
		t.Errorf("pidfd_getfd on the agent as its user succeeded, want EPERM")
	} else if !errors.Is(err, unix.EPERM) {
		t.Errorf("pidfd_getfd = %v, want EPERM", err)
	}
}

// getfdAs calls pidfd_getfd(pid, 3) from a thread running as cred (nil:
// as the test), which it leaves behind: setresuid on one thread only.
func getfdAs(pid int, cred *syscall.Credential) error {
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if cred != nil {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(cred.Gid), uintptr(cred.Gid), uintptr(cred.Gid)); e != 0 {
				res <- e
				return
			}
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(cred.Uid), uintptr(cred.Uid), uintptr(cred.Uid)); e != 0 {
				res <- e
				return
			}
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			res <- err
			return
		}
		defer unix.Close(fd)
		got, err := unix.PidfdGetfd(fd, 3, 0)
		if err == nil {
			unix.Close(got)
		}
		res <- err
	}()
	return <-res
}
