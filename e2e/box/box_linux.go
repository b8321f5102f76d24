package box

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed init.sh
var initScript []byte

// Inside is where the shared directory appears inside a box.
const Inside = "/octo-share"

// Box is a running systemd machine in its own namespaces.
type Box struct {
	share  string // host directory bound at Inside
	cgroup string // host path of the box's cgroup2 directory
	// Hybrid mode only: the v1 hierarchies mounted in the box (as
	// /proc/self/cgroup names them) and the box's directory in each.
	hierarchies []string
	v1          []string
	cmd         *exec.Cmd // unshare; its only child is the box's systemd
	pid         int       // host PID of the box's systemd (PID 1 inside)
	log         *os.File
	done        chan struct{} // closed when cmd has exited
}

// Check reports why boxes cannot run here (nil if they can).
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root")
	}
	for _, tool := range []string{"unshare", "nsenter", "mount", "ip", "pivot_root"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (util-linux, iproute2): %w", tool, err)
		}
	}
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		return fmt.Errorf("needs systemd installed: %w", err)
	}
	if _, err := readLayout(); err != nil {
		return err
	}
	return nil
}

// Boot starts a box sharing the host directory share (bound at Inside) and
// waits until its systemd reports running. Console output goes to
// share/box.log. The caller must Close the box.
func Boot(ctx context.Context, share string) (*Box, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	share, err := filepath.Abs(share)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(share, "init.sh"), initScript, 0o755); err != nil {
		return nil, err
	}
	l, err := readLayout()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("octo-e2e-%d-%d", os.Getpid(), time.Now().UnixNano())
	b := &Box{share: share, done: make(chan struct{})}
	b.cgroup = filepath.Join(l.v2root, name)
	if err := os.Mkdir(b.cgroup, 0o755); err != nil {
		return nil, fmt.Errorf("create box cgroup: %w", err)
	}
	if l.hybrid() {
		if b.v1, err = makeV1(l, name); err != nil {
			removeCgroups([]string{b.cgroup})
			return nil, err
		}
		for _, h := range l.v1 {
			b.hierarchies = append(b.hierarchies, h.opts)
		}
	}
	if err := b.start(); err != nil {
		b.removeCgroups()
		return nil, err
	}
	if err := b.waitRunning(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Box) start() error {
	cg, err := os.Open(b.cgroup)
	if err != nil {
		return err
	}
	defer cg.Close()
	b.log, err = os.Create(filepath.Join(b.share, "box.log"))
	if err != nil {
		return err
	}
	argv := append([]string{"unshare", "--cgroup", "--pid", "--fork", "--kill-child", "--mount", "--net",
		"/bin/sh", filepath.Join(b.share, "init.sh"), b.share}, b.hierarchies...)
	if len(b.v1) > 0 {
		// CgroupFD places the process in the box's cgroup2 directory; v1
		// has no such clone flag, so the process joins its v1 directories
		// itself, before unshare --cgroup makes all of them its roots.
		prelude := `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1/cgroup.procs"; shift; n=$((n - 1)); done; exec "$@"`
		argv = append(append([]string{"/bin/sh", "-ec", prelude, "box-prelude", strconv.Itoa(len(b.v1))}, b.v1...), argv...)
	}
	b.cmd = exec.Command(argv[0], argv[1:]...)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	b.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	b.cmd.SysProcAttr = &syscall.SysProcAttr{
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
		Pdeathsig:   syscall.SIGKILL, // and --kill-child takes the box down with it
		Setsid:      true,
	}
	// Pdeathsig fires when the thread that started the child exits, not the
	// process; Go ends threads (one that a goroutine left locked, as
	// DialContext does). So start and wait on a thread of our own that lives
	// exactly as long as the box.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := b.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		b.cmd.Wait()
		close(b.done)
	}()
	if err := <-started; err != nil {
		b.log.Close()
		return fmt.Errorf("start unshare: %w", err)
	}
	return nil
}

// waitRunning finds the box's PID 1 and waits for systemd to finish booting.
func (b *Box) waitRunning(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for b.pid == 0 {
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", b.cmd.Process.Pid, b.cmd.Process.Pid))
		if f := strings.Fields(string(children)); len(f) > 0 {
			if pid, _ := strconv.Atoi(f[0]); pid > 0 {
				if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasSuffix(exe, "/systemd") {
					b.pid = pid
					break
				}
			}
		}
		select {
		case <-b.done:
			return fmt.Errorf("box exited while booting; see %s:\n%s", b.log.Name(), b.tail())
		case <-ctx.Done():
			return fmt.Errorf("box did not start systemd: %w; see %s:\n%s", ctx.Err(), b.log.Name(), b.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
	for {
		out, _ := b.Command(ctx, "systemctl", "is-system-running").Output()
		switch s := strings.TrimSpace(string(out)); s {
		case "running":
			return nil
		case "degraded":
			failed, _ := b.Run(ctx, "systemctl", "--failed", "--no-pager", "--no-legend")
			return fmt.Errorf("box booted degraded; failed units:\n%s", failed)
		}
		select {
		case <-b.done:
			return fmt.Errorf("box exited while booting; see %s:\n%s", b.log.Name(), b.tail())
		case <-ctx.Done():
			return fmt.Errorf("box systemd not running: %w; see %s:\n%s", ctx.Err(), b.log.Name(), b.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *Box) tail() string {
	data, _ := os.ReadFile(b.log.Name())
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// PID is the host PID of the box's systemd.
func (b *Box) PID() int { return b.pid }

// Hybrid reports whether the box has the hybrid cgroup layout (see the
// package documentation): cgroup v1 hierarchies for the controllers, and
// cgroup2 at /sys/fs/cgroup/unified.
func (b *Box) Hybrid() bool { return len(b.v1) > 0 }

// Cgroup2 is where the box's cgroup2 tree is mounted inside the box:
// /sys/fs/cgroup, or /sys/fs/cgroup/unified in a hybrid box.
func (b *Box) Cgroup2() string {
	if b.Hybrid() {
		return "/sys/fs/cgroup/unified"
	}
	return "/sys/fs/cgroup"
}

// Share is the host directory that the box sees at Inside.
func (b *Box) Share() string { return b.share }

// Path returns the host path of path inside the box (through /proc/PID/root).
func (b *Box) Path(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", b.pid, path)
}

// Command returns a command that runs argv inside the box as root, in all
// of its namespaces, with its root directory.
func (b *Box) Command(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"-t", strconv.Itoa(b.pid), "-a", "-r", "-w", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	cmd.Dir = "/"
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs argv inside the box as root and returns its standard output. Its
// error includes the command's standard error.
func (b *Box) Run(ctx context.Context, argv ...string) (string, error) {
	cmd := b.Command(ctx, argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("box: %s: %w: %s%s", strings.Join(argv, " "), err, out, stderr.Bytes())
	}
	return string(out), nil
}

// RunAs runs argv inside the box as user (with the user's groups, home and
// a login-like environment) and returns its standard output.
func (b *Box) RunAs(ctx context.Context, user string, argv ...string) (string, error) {
	return b.Run(ctx, append([]string{"runuser", "-u", user, "--"}, argv...)...)
}

// Sh runs a shell script inside the box as root.
func (b *Box) Sh(ctx context.Context, script string) (string, error) {
	return b.Run(ctx, "/bin/sh", "-ec", script)
}

// Close powers the box off (killing it if it does not stop within 30s) and
// removes its cgroup. It is safe to call more than once.
func (b *Box) Close() error {
	if b.cmd == nil {
		return nil
	}
	select {
	case <-b.done:
	default:
		if b.pid != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			b.Command(ctx, "systemctl", "poweroff", "--no-block").Run()
			cancel()
		}
		select {
		case <-b.done:
		case <-time.After(30 * time.Second):
			killCgroups(b.cgroup, b.v1)
			b.cmd.Process.Kill()
			<-b.done
		}
	}
	b.log.Close()
	// Processes may linger a moment after PID 1 is gone.
	killCgroups(b.cgroup, b.v1)
	err := b.removeCgroups()
	os.Remove(filepath.Join(b.share, ".root"))
	return err
}

// removeCgroups removes the box's cgroup directories and everything below
// them.
func (b *Box) removeCgroups() error {
	return removeCgroups(append([]string{b.cgroup}, b.v1...))
}
