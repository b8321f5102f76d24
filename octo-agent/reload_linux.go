package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"octo/internal/agent"
	"octo/internal/agent/session"
	"octo/internal/agentrpc"
)

// handoverEnv names the descriptor of the hand-over state in the
// environment of the next image.
const handoverEnv = "OCTO_AGENT_HANDOVER"

// handoverFormat is the version of handoverState. A binary that reads
// another refuses the reload before anything pauses.
const handoverFormat = 1

// handoverState is what one agent image passes the next across exec: the
// agent's Handover with descriptors as numbers, which stay open across
// exec.
type handoverState struct {
	Format    int
	Exe       string // the path the next reload runs
	Token     string
	StartTime time.Time
	Sessions  *session.Handover
	Listener  int
	Lock      int
	Files     []int // the session descriptors, in Sessions.Files' order
	Previous  int   // the old binary, to go back to; -1 when going back
	Close     []int // descriptors to close once serving
	Failed    string
	Began     time.Time // when the reload began, for the log
	// Unlink says the agent bound its socket itself (not socket-activated):
	// the image that exits removes the socket file.
	Unlink bool
}

// checkLine is what "octo-agent handover-check" prints: a new binary must
// print the same line as the old one to take over.
func checkLine() string {
	return fmt.Sprintf("octo-agent handover %d %s", handoverFormat, strings.TrimSpace(agentrpc.Preamble))
}

// reloader runs the binary at exe in place (same pid) on reload.
type reloader struct {
	exe    string
	args   []string
	log    *slog.Logger
	t0     time.Time
	unlink bool // the agent bound its socket itself
}

// Prepare tells systemd the reload started and checks that the new binary
// runs and speaks the same hand-over format and protocol.
func (r *reloader) Prepare() error {
	r.t0 = time.Now()
	daemon.SdNotify(false, "RELOADING=1\nMONOTONIC_USEC="+monotonicUsec())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.exe, "handover-check").Output()
	got := strings.TrimSpace(string(out))
	if err != nil {
		return fmt.Errorf("new binary %s does not run: %v", r.exe, err)
	}
	if got != checkLine() {
		return fmt.Errorf("new binary %s cannot take over: it says %q, this agent needs %q", r.exe, trim(got), checkLine())
	}
	return nil
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// Resumed tells systemd the old agent serves again.
func (r *reloader) Resumed(error) {
	daemon.SdNotify(false, daemon.SdNotifyReady)
}

// Exec runs the new binary in this process, passing h. It returns only if
// the exec failed, with h as it was.
func (r *reloader) Exec(h *agent.Handover) error {
	// The old binary, even once replaced, to go back to. O_PATH: its user
	// may execute it but not read it (units/install.sh installs it 0711,
	// so that execve makes the agent non-dumpable), and executing the
	// descriptor needs no more.
	fd, err := unix.Open("/proc/self/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the running binary: %w", err)
	}
	prev := os.NewFile(uintptr(fd), "/proc/self/exe")
	defer prev.Close()
	st := handoverState{Format: handoverFormat, Exe: r.exe, Token: h.Token, StartTime: h.StartTime, Began: r.t0, Unlink: r.unlink,
		Sessions: h.Sessions, Listener: fdOf(h.Listener), Lock: fdOf(h.Lock), Previous: fdOf(prev)}
	pass := []*os.File{h.Listener, h.Lock, prev}
	for _, f := range h.Sessions.Files {
		st.Files = append(st.Files, fdOf(f))
		pass = append(pass, f)
	}
	r.log.Info("agent executing the new binary", "exe", r.exe, "sessions", len(h.Sessions.Sessions))
	return execWith(r.exe, r.args, &st, pass)
}

// execWith writes st into a memfd and execs exe with it and every file of
// pass kept open. On failure the files get their close-on-exec flag back.
func execWith(exe string, args []string, st *handoverState, pass []*os.File) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	mfd, err := unix.MemfdCreate("octo-agent-handover", 0)
	if err != nil {
		return fmt.Errorf("hand-over state: %w", err)
	}
	state := os.NewFile(uintptr(mfd), "octo-agent-handover")
	defer state.Close()
	if _, err := state.Write(b); err != nil {
		return fmt.Errorf("hand-over state: %w", err)
	}
	for _, f := range pass {
		if err := session.ClearCloexec(f); err != nil {
			setCloexec(pass)
			return fmt.Errorf("pass descriptor: %w", err)
		}
	}
	env := append(withoutEnv(os.Environ(), handoverEnv), handoverEnv+"="+strconv.Itoa(mfd))
	err = syscall.Exec(exe, args, env)
	setCloexec(pass)
	runtime.KeepAlive(pass)
	return fmt.Errorf("exec %s: %w", exe, err)
}

func setCloexec(files []*os.File) {
	for _, f := range files {
		unix.CloseOnExec(fdOf(f))
	}
}

func fdOf(f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	rc.Control(func(u uintptr) { fd = int(u) })
	return fd
}

func withoutEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd wants with
// RELOADING=1.
func monotonicUsec() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return strconv.FormatInt(ts.Nano()/1000, 10)
}

// takeHandover reads the state an earlier image passed, if any, and
// removes its variable from the environment.
func takeHandover() (*handoverState, bool, error) {
	v, ok := os.LookupEnv(handoverEnv)
	if !ok {
		return nil, false, nil
	}
	os.Unsetenv(handoverEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, true, fmt.Errorf("%s=%q is not a descriptor", handoverEnv, v)
	}
	f := os.NewFile(uintptr(fd), "octo-agent-handover")
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 16<<20))
	if err != nil {
		return nil, true, fmt.Errorf("read hand-over state: %w", err)
	}
	var st handoverState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, true, fmt.Errorf("read hand-over state: %w", err)
	}
	if st.Format != handoverFormat || st.Sessions == nil {
		return nil, true, fmt.Errorf("hand-over state of format %d, want %d", st.Format, handoverFormat)
	}
	return &st, true, nil
}

// files returns the state's descriptors as files, close-on-exec again so
// that sessions do not inherit them.
func (st *handoverState) files() (h *agent.Handover, sessionFiles []*os.File) {
	for _, fd := range append([]int{st.Listener, st.Lock}, st.Files...) {
		unix.CloseOnExec(fd)
	}
	h = &agent.Handover{Token: st.Token, StartTime: st.StartTime, Sessions: st.Sessions,
		Listener: os.NewFile(uintptr(st.Listener), "listener"), Lock: os.NewFile(uintptr(st.Lock), "lock"),
		Failed: st.Failed}
	for _, fd := range st.Files {
		sessionFiles = append(sessionFiles, os.NewFile(uintptr(fd), "session"))
	}
	return h, sessionFiles
}

// handBack goes back to the old binary after this one failed to take over:
// it execs it with the same state and the reason. It returns only if that
// failed too (the sessions are then lost with this process).
func handBack(st *handoverState, args []string, reason error) error {
	if st.Previous < 0 {
		return fmt.Errorf("take over: %w (and no binary to go back to)", reason)
	}
	prev := st.Previous
	back := *st
	back.Previous = -1
	back.Close = append(back.Close, prev)
	back.Failed = "the new binary could not take over: " + reason.Error()
	pass := []*os.File{os.NewFile(uintptr(st.Listener), "listener"), os.NewFile(uintptr(st.Lock), "lock")}
	for _, fd := range st.Files {
		pass = append(pass, os.NewFile(uintptr(fd), "session"))
	}
	err := execWith("/proc/self/fd/"+strconv.Itoa(prev), args, &back, pass)
	return errors.Join(fmt.Errorf("take over: %w", reason), err)
}

// done closes what the earlier images left open once this one serves.
func (st *handoverState) done() {
	for _, fd := range append(st.Close, st.Previous) {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
