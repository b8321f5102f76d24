package session

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
	"octo/internal/peercred"
)

// defaultPath is the PATH of sessions that do not set one (systemd's default).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// checkStart validates a start request.
func checkStart(req *agentrpc.StartRequest) error {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return errorf(agentrpc.CodeInvalid, "start: argv is empty; give the program and its arguments")
	}
	size := len(req.Name) + len(req.Cwd)
	for _, a := range req.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return errorf(agentrpc.CodeInvalid, "start: argument %q contains a NUL byte", a)
		}
		size += len(a) + 1
	}
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return errorf(agentrpc.CodeInvalid, "start: environment variable %q: names must be non-empty without '=' or NUL, values without NUL", k)
		}
		size += len(k) + len(v) + 2
	}
	if size > agentrpc.MaxArgvEnvSize {
		return errorf(agentrpc.CodeTooLarge, "start: argv, env and name take %d bytes, over the %d byte limit", size, agentrpc.MaxArgvEnvSize)
	}
	if !req.TTY && (req.Rows != 0 || req.Cols != 0) {
		return errorf(agentrpc.CodeInvalid, "start: rows and cols need tty")
	}
	return nil
}

// environ builds a session's environment: a clean base with the request's
// variables laid over it.
func (m *Manager) environ(req *agentrpc.StartRequest, cwd string) []string {
	lang := os.Getenv("LANG")
	if lang == "" {
		lang = "C.UTF-8"
	}
	env := map[string]string{
		"HOME": m.cfg.Home, "USER": m.cfg.User, "LOGNAME": m.cfg.User,
		"SHELL": m.cfg.Shell, "PATH": defaultPath, "LANG": lang,
		"PWD": filepath.Join(m.cfg.Workspace, cwd),
	}
	if req.TTY {
		env["TERM"] = "xterm-256color"
	}
	for k, v := range req.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// lookPath finds argv0 in the session's PATH, not the agent's.
func lookPath(argv0, pathEnv string) (string, error) {
	if strings.Contains(argv0, "/") {
		return argv0, nil // relative names resolve against the session's cwd
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !path.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, argv0)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in PATH", argv0)
}

// Cwd is a start's working directory: an open directory in the workspace
// and its path relative to the workspace. The agent resolves it (os.Root),
// the Manager only starts the process there.
type Cwd struct {
	Dir *os.File
	Rel string
}

// Start starts a session in cwd. A process that cannot be started gives a
// record in state failed, not an error. caller is logged.
func (m *Manager) Start(req *agentrpc.StartRequest, cwd Cwd, caller peercred.Cred) (agentrpc.Session, error) {
	if err := checkStart(req); err != nil {
		return agentrpc.Session{}, err
	}
	if st, err := cwd.Dir.Stat(); err != nil || !st.IsDir() {
		return agentrpc.Session{}, errorf(agentrpc.CodeInvalid, "start: cwd %s is not a directory", cwd.Rel)
	}
	rows, cols := req.Rows, req.Cols
	if rows == 0 {
		rows = 24
	}
	if cols == 0 {
		cols = 80
	}
	if err := m.reserve(); err != nil {
		return agentrpc.Session{}, err
	}
	id := newID()
	ses := newSession(m, record{
		Session:   agentrpc.Session{ID: id, Name: req.Name, Argv: append([]string(nil), req.Argv...), Cwd: cwd.Rel, TTY: req.TTY, StartTime: time.Now()},
		OutputCap: m.cfg.OutputCap,
	})
	var err error
	ses.out, err = createOutput(m.outputPath(id), m.cfg.OutputCap)
	if err != nil {
		m.release()
		return agentrpc.Session{}, errorf(agentrpc.CodeInternal, "start: create output file: %v", bare(err))
	}
	env := m.environ(req, cwd.Rel)
	cmd := &exec.Cmd{Args: req.Argv, Env: env, Dir: fmt.Sprintf("/proc/self/fd/%d", cwd.Dir.Fd())}
	cmd.Path, err = lookPath(req.Argv[0], envValue(env, "PATH"))
	if err == nil {
		err = ses.launch(cmd, rows, cols)
	}
	if err != nil {
		return m.failed(ses, err), nil
	}
	// The session reaps its leader itself (wait_linux.go); cmd.Wait is
	// never called, so the exec package's copying goroutines must not exist:
	// every standard stream is an *os.File.
	ses.rec.PID = cmd.Process.Pid
	ses.rec.ProcStart, _ = procStart(ses.rec.PID)
	ses.rec.State = agentrpc.StateRunning
	ses.pgid = cmd.Process.Pid
	cmd.Process.Release()
	// Not synced: the record must survive the agent, not the machine (a
	// power loss ends the session too). The end record is synced.
	if err := m.save(ses.rec, false); err != nil {
		m.log.Warn("session record not saved", "session", id, "err", err)
	}
	m.add(ses)
	ses.run()
	m.log.Info("session started", "session", id, "pid", ses.pgid, "argv0", req.Argv[0], "tty", req.TTY, "caller_uid", caller.UID, "caller_pid", caller.PID)
	return ses.Snapshot(), nil
}

// failed records a session whose process could not be started.
func (m *Manager) failed(ses *Session, err error) agentrpc.Session {
	ses.out.Close()
	ses.rec.State = agentrpc.StateFailed
	ses.rec.Error = "start: " + err.Error()
	ses.rec.EndTime = time.Now()
	close(ses.ended)
	if err := m.save(ses.rec, true); err != nil {
		m.log.Warn("session record not saved", "session", ses.rec.ID, "err", err)
	}
	m.add(ses)
	m.release()
	m.log.Info("session failed to start", "session", ses.rec.ID, "err", err)
	return ses.Snapshot()
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// launch starts cmd in its own process group (or session, with a tty),
// wiring its standard streams to ses.
func (ses *Session) launch(cmd *exec.Cmd, rows, cols uint16) error {
	if ses.rec.TTY {
		master, slave, err := openPTY(rows, cols)
		if err != nil {
			return err
		}
		defer slave.Close()
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := cmd.Start(); err != nil {
			master.Close()
			return err
		}
		ses.input, ses.pty, ses.output = master, master, master
		return nil
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer outW.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		outR.Close()
		return err
	}
	defer inR.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, outW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		outR.Close()
		inW.Close()
		return err
	}
	ses.input, ses.output = inW, outR
	return nil
}

// openPTY opens a pseudo-terminal pair of the given size.
func openPTY(rows, cols uint16) (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	var n uint32
	err = rawControl(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return err
		}
		v, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		n = v
		if err != nil {
			return err
		}
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("set up pty: %w", err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	return master, slave, nil
}

// rawControl runs fn on f's file descriptor.
func rawControl(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// signalName returns a signal's name without "SIG", or its number.
func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return strings.TrimPrefix(n, "SIG")
	}
	return strconv.Itoa(int(sig))
}

// parseSignal accepts "INT", "SIGINT", "int" or a number.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, errorf(agentrpc.CodeInvalid, "signal %d is out of range 1-64", n)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, errorf(agentrpc.CodeInvalid, "unknown signal %q; use a name like TERM or a number", s)
}
