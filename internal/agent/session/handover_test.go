package session_test

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agent/session"
	"octo/internal/agentrpc"
	"octo/internal/peercred"
)

func testConfig(t *testing.T) session.Config {
	dir := t.TempDir()
	return session.Config{User: "u", Home: dir, Workspace: dir, Dir: dir + "/sessions",
		MaxSessions: 8, KeepSessions: 100, OutputCap: 1 << 20, OutputBudget: 1 << 30}
}

func start(t *testing.T, m *session.Manager, req agentrpc.StartRequest) agentrpc.Session {
	t.Helper()
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	s, err := m.Start(&req, session.Cwd{Dir: dir, Rel: "."}, peercred.Cred{})
	if err != nil || s.PID <= 0 {
		t.Fatalf("Start(%q) = %+v, %v; want a started process", req.Argv, s, err)
	}
	t.Cleanup(func() { unix.Kill(-s.PID, unix.SIGKILL) })
	return s
}

// readUntil reads a session's output from off until it contains want.
func readUntil(t *testing.T, m *session.Manager, id string, off int64, want string) ([]byte, int64) {
	t.Helper()
	ses, err := m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); !bytes.Contains(got, []byte(want)); {
		if time.Now().After(deadline) {
			t.Fatalf("session %s: output %q lacks %q after 10s", id, got, want)
		}
		o, err := ses.Read(&agentrpc.OutputRequest{ID: id, Offset: off, Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if o.Offset != off {
			t.Fatalf("session %s: read at %d came from %d", id, off, o.Offset)
		}
		got = append(got, o.Data...)
		off = o.Next
	}
	return got, off
}

// dups returns copies of files that outlive the originals, as exec would
// keep the descriptors themselves.
func dups(t *testing.T, files []*os.File) []*os.File {
	out := make([]*os.File, len(files))
	for i, f := range files {
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = os.NewFile(uintptr(fd), f.Name())
	}
	return out
}

// checkCounter checks that out holds the lines 1, 2, 3, ... with no gap or
// repeat, and returns the last.
func checkCounter(t *testing.T, out []byte) int {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	for i, l := range lines {
		if n, err := strconv.Atoi(l); err != nil || n != i+1 {
			t.Fatalf("counter line %d is %q, want %d (output lost or repeated)", i+1, l, i+1)
		}
	}
	return len(lines)
}

const counter = `i=0; while :; do i=$((i+1)); echo $i; sleep 0.002; done`

// TestHandover hands a pipe session and a tty session to a new Manager in
// the same process, as the re-exec does across exec: same pids, output
// offsets continuing exactly, input, resize, signal and stop working.
func TestHandover(t *testing.T) {
	cfg := testConfig(t)
	m1, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pipe := start(t, m1, agentrpc.StartRequest{Argv: []string{"sh", "-c", counter}})
	tty := start(t, m1, agentrpc.StartRequest{Argv: []string{"sh", "-c", `while read l; do echo "got $l"; stty size; done`}, TTY: true, Rows: 30, Cols: 100})
	done := start(t, m1, agentrpc.StartRequest{Argv: []string{"echo", "finished"}})
	ses, _ := m1.Get(tty.ID)
	if err := ses.WriteInput([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	_, ttyOff := readUntil(t, m1, tty.ID, 0, "got before")
	readUntil(t, m1, pipe.ID, 0, "\n100\n")
	readUntil(t, m1, done.ID, 0, "finished")

	h, err := m1.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Sessions) != 2 {
		t.Fatalf("Freeze handed %d sessions, want 2 (the running ones)", len(h.Sessions))
	}
	time.Sleep(50 * time.Millisecond) // the counter writes into the pipe meanwhile
	m2, err := session.Adopt(cfg, h, dups(t, h.Files))
	if err != nil {
		t.Fatal(err)
	}
	m1.Finish(h)

	if n := m2.Running(); n != 2 {
		t.Errorf("Running after adoption = %d, want 2", n)
	}
	if len(m2.List()) != 3 {
		t.Errorf("List after adoption has %d sessions, want 3", len(m2.List()))
	}
	out, _ := readUntil(t, m2, pipe.ID, 0, "\n300\n")
	if n := checkCounter(t, out[:bytes.LastIndexByte(out, '\n')+1]); n < 300 {
		t.Errorf("counter reached %d, want 300", n)
	}
	ses, err = m2.Get(tty.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := ses.Resize(40, 120); err != nil {
		t.Fatal(err)
	}
	if err := ses.WriteInput([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, m2, tty.ID, ttyOff, "got after\r\n40 120")
	for _, s := range []agentrpc.Session{pipe, tty} {
		got, err := m2.Stop(s.ID, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got.PID != s.PID || got.State != agentrpc.StateExited || got.Signal != "TERM" {
			t.Errorf("Stop after adoption = %+v, want pid %d exited by TERM", got, s.PID)
		}
	}
	if n := m2.Running(); n != 0 {
		t.Errorf("Running after the stops = %d, want 0", n)
	}
	m2.Shutdown(time.Second)
}

// TestFreezeThaw: a hand-over that does not happen leaves the sessions
// running with their output whole.
func TestFreezeThaw(t *testing.T) {
	cfg := testConfig(t)
	m, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(time.Second)
	pipe := start(t, m, agentrpc.StartRequest{Argv: []string{"sh", "-c", counter}})
	readUntil(t, m, pipe.ID, 0, "\n50\n")
	if _, err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Freeze(); err == nil {
		t.Error("second Freeze succeeded, want ErrFrozen")
	}
	dir, _ := os.Open(cfg.Workspace)
	defer dir.Close()
	_, err = m.Start(&agentrpc.StartRequest{Argv: []string{"true"}}, session.Cwd{Dir: dir, Rel: "."}, peercred.Cred{})
	if agentrpc.CodeOf(err) != agentrpc.CodeLimit {
		t.Errorf("Start while frozen = %v, want code limit", err)
	}
	time.Sleep(50 * time.Millisecond)
	m.Thaw()
	out, _ := readUntil(t, m, pipe.ID, 0, "\n200\n")
	checkCounter(t, out[:bytes.LastIndexByte(out, '\n')+1])
}
