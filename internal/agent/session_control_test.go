package agent_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

// alive reports whether pid runs (zombies count as gone).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

func TestSessionStopGroup(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t)
	// The leader and its two children ignore SIGTERM.
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", `trap "" TERM; sleep 1000 & echo $!; sleep 1000 & echo $!; wait`}})
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	var off int64
	for bytes.Count(out, []byte("\n")) < 2 {
		o, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Offset: off, Wait: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out, off = append(out, o.Data...), o.Next
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		n, _ := strconv.Atoi(f)
		pids = append(pids, n)
	}
	pids = append(pids, s.PID)
	start := time.Now()
	end, err := c.Stop(ctx, agentrpc.StopRequest{ID: s.ID, Grace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Stop returned after %v, before the grace period", d)
	}
	if end.State != agentrpc.StateExited || end.Signal != "KILL" {
		t.Errorf("Stop = %+v, want exited by KILL", end)
	}
	time.Sleep(100 * time.Millisecond)
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d of the group still runs after Stop", pid)
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	// Stopping an ended session returns its record.
	again, err := c.Stop(ctx, agentrpc.StopRequest{ID: s.ID})
	if err != nil || again.Signal != "KILL" {
		t.Errorf("second Stop = %+v, %v", again, err)
	}
}

func TestSessionStopTerm(t *testing.T) {
	c, _ := newClient(t)
	s, err := c.Start(ctxT(t), agentrpc.StartRequest{Argv: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	end, err := c.Stop(ctxT(t), agentrpc.StopRequest{ID: s.ID})
	if err != nil || end.Signal != "TERM" || end.State != agentrpc.StateExited {
		t.Errorf("Stop = %+v, %v; want exited by TERM", end, err)
	}
}

func TestSessionSignal(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "bad signal", c.Signal(ctx, s.ID, "NOPE"), agentrpc.CodeInvalid)
	wantCode(t, "signal 99", c.Signal(ctx, s.ID, "99"), agentrpc.CodeInvalid)
	wantCode(t, "resize no tty", c.Resize(ctx, s.ID, 10, 10), agentrpc.CodeInvalid)
	if err := c.Signal(ctx, s.ID, "int"); err != nil {
		t.Fatal(err)
	}
	if end := waitEnd(t, c, s.ID); end.Signal != "INT" {
		t.Errorf("after SIGINT: %+v, want signal INT", end)
	}
	wantCode(t, "signal ended", c.Signal(ctx, s.ID, "TERM"), agentrpc.CodeNotRunning)
	wantCode(t, "resize ended", c.Resize(ctx, s.ID, 10, 10), agentrpc.CodeNotRunning)
	wantCode(t, "input ended", c.WriteInput(ctx, s.ID, []byte("x")), agentrpc.CodeNotRunning)
}

func TestSessionTTY(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{
		Argv: []string{"sh", "-c", `test -t 0 && test -t 1 && echo tty-yes; stty size; read x; stty size; echo "got $x"`},
		TTY:  true, Rows: 30, Cols: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	var off int64
	for !bytes.Contains(out, []byte("30 100")) {
		o, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Offset: off, Wait: 5 * time.Second})
		if err != nil || o.Done {
			t.Fatalf("output %q, %v; want the size 30 100", out, err)
		}
		out, off = append(out, o.Data...), o.Next
	}
	if err := c.Resize(ctx, s.ID, 40, 120); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "resize 0", c.Resize(ctx, s.ID, 0, 120), agentrpc.CodeInvalid)
	if err := c.WriteInput(ctx, s.ID, []byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	out = append(out, readAllFrom(t, c, s.ID, off)...)
	got := strings.ReplaceAll(string(out), "\r", "")
	for _, want := range []string{"tty-yes\n", "30 100\n", "40 120\n", "got hi\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("tty output %q lacks %q", got, want)
		}
	}
	end := waitEnd(t, c, s.ID)
	if code, ok := exitCode(end); !ok || code != 0 || !end.TTY {
		t.Errorf("tty session ended %+v, want exit 0", end)
	}
}

func readAllFrom(t *testing.T, c *agentrpc.Client, id string, off int64) []byte {
	var out []byte
	for {
		o, err := c.ReadOutput(ctxT(t), agentrpc.OutputRequest{ID: id, Offset: off, Wait: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out, off = append(out, o.Data...), o.Next
		if o.Done {
			return out
		}
	}
}

func TestSessionOutputCap(t *testing.T) {
	const capBytes = 64 << 10
	sock, _ := agenttest.StartServer(t, agent.Config{OutputCap: capBytes})
	c := dial(t, sock)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"seq", "1", "200000"}})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := 1; i <= 200000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	waitEnd(t, c, s.ID)
	o, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Offset: 0, Max: 1000})
	if err != nil {
		t.Fatal(err)
	}
	size := int64(want.Len())
	if o.Size != size || o.Start != size-capBytes || o.Offset != o.Start || o.Done {
		t.Fatalf("read from 0 = size %d start %d offset %d done %v; want size %d start %d offset = start", o.Size, o.Start, o.Offset, o.Done, size, size-capBytes)
	}
	got := readAllFrom(t, c, s.ID, o.Start)
	if !bytes.Equal(got, want.Bytes()[size-capBytes:]) {
		t.Errorf("kept output (%d bytes) is not the newest %d bytes of seq", len(got), capBytes)
	}
	wantCode(t, "offset past end", func() error {
		_, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Offset: size + 1})
		return err
	}(), agentrpc.CodeInvalid)
	wantCode(t, "max too large", func() error {
		_, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Max: agentrpc.MaxReadChunk + 1})
		return err
	}(), agentrpc.CodeTooLarge)
}

func TestSessionLongPoll(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", "sleep 0.3; echo late; sleep 0.3"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	o, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); string(o.Data) != "late\n" || d < 200*time.Millisecond || d > 5*time.Second || o.Done {
		t.Errorf("long poll = %q done=%v after %v; want \"late\\n\", not done, after ~0.3s", o.Data, o.Done, d)
	}
	// The next poll returns when the session ends, with Done.
	o, err = c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Offset: o.Next, Wait: 10 * time.Second})
	if err != nil || len(o.Data) != 0 || !o.Done || o.Next != 5 {
		t.Errorf("poll at end = %+v, %v; want no data, done, next 5", o, err)
	}
	// A poll on a quiet session times out.
	q, _ := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sleep", "1000"}})
	start = time.Now()
	o, err = c.ReadOutput(ctx, agentrpc.OutputRequest{ID: q.ID, Wait: 200 * time.Millisecond})
	if d := time.Since(start); err != nil || len(o.Data) != 0 || o.Done || d < 200*time.Millisecond {
		t.Errorf("quiet poll = %+v, %v after %v; want empty after 200ms", o, err, d)
	}
}

func TestSessionLimitAndInvalid(t *testing.T) {
	sock, _ := agenttest.StartServer(t, agent.Config{MaxSessions: 1})
	c := dial(t, sock)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Start(ctx, agentrpc.StartRequest{Argv: []string{"true"}})
	wantCode(t, "second session", err, agentrpc.CodeLimit)
	c.Stop(ctx, agentrpc.StopRequest{ID: s.ID, Grace: time.Second})
	if _, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"true"}}); err != nil {
		t.Errorf("Start after Stop freed the slot: %v", err)
	}

	big := strings.Repeat("x", agentrpc.MaxArgvEnvSize)
	tests := []struct {
		name string
		req  agentrpc.StartRequest
		want agentrpc.Code
	}{
		{"empty argv", agentrpc.StartRequest{}, agentrpc.CodeInvalid},
		{"nul in arg", agentrpc.StartRequest{Argv: []string{"echo", "a\x00b"}}, agentrpc.CodeInvalid},
		{"bad env key", agentrpc.StartRequest{Argv: []string{"true"}, Env: map[string]string{"A=B": "c"}}, agentrpc.CodeInvalid},
		{"argv too large", agentrpc.StartRequest{Argv: []string{"echo", big}}, agentrpc.CodeTooLarge},
		{"env too large", agentrpc.StartRequest{Argv: []string{"true"}, Env: map[string]string{"X": big}}, agentrpc.CodeTooLarge},
		{"size without tty", agentrpc.StartRequest{Argv: []string{"true"}, Rows: 10}, agentrpc.CodeInvalid},
		{"cwd missing", agentrpc.StartRequest{Argv: []string{"true"}, Cwd: "nope"}, agentrpc.CodeNotFound},
		{"cwd absolute", agentrpc.StartRequest{Argv: []string{"true"}, Cwd: "/tmp"}, agentrpc.CodeOutsideWorkspace},
	}
	for _, tt := range tests {
		_, err := c.Start(ctx, tt.req)
		wantCode(t, tt.name, err, tt.want)
	}
	for name, err := range map[string]error{
		"get unknown":    func() error { _, err := c.Session(ctx, "0123456789abcdef"); return err }(),
		"get bad id":     func() error { _, err := c.Session(ctx, "../../etc/passwd"); return err }(),
		"stop unknown":   func() error { _, err := c.Stop(ctx, agentrpc.StopRequest{ID: "0123456789abcdef"}); return err }(),
		"read unknown":   func() error { _, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: "x"}); return err }(),
		"input unknown":  c.WriteInput(ctx, "x", nil),
		"close unknown":  c.CloseInput(ctx, "x"),
		"resize unknown": c.Resize(ctx, "x", 1, 1),
		"signal unknown": c.Signal(ctx, "x", "TERM"),
	} {
		wantCode(t, name, err, agentrpc.CodeNotFound)
	}
	wantCode(t, "input too large", c.WriteInput(ctx, s.ID, make([]byte, agentrpc.MaxInputSize+1)), agentrpc.CodeTooLarge)
	_, err = c.Stop(ctx, agentrpc.StopRequest{ID: s.ID, Grace: -1})
	wantCode(t, "negative grace", err, agentrpc.CodeInvalid)
}

// TestSessionStopLeftovers stops the children an ended session left running.
func TestSessionStopLeftovers(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"}})
	if err != nil {
		t.Fatal(err)
	}
	out := readAll(t, c, s.ID)
	child, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	defer unix.Kill(child, unix.SIGKILL)
	if end := waitEnd(t, c, s.ID); end.State != agentrpc.StateExited || !alive(child) {
		t.Fatalf("session %+v, child alive %v; want exited with its child running", end, alive(child))
	}
	if _, err := c.Stop(ctx, agentrpc.StopRequest{ID: s.ID, Grace: time.Second}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if alive(child) {
		t.Errorf("child %d of an ended session still runs after Stop", child)
	}
}

// TestSessionInputNotRead writes more than a pipe holds to a session that
// never reads: the call gives up with ErrLimit instead of hanging.
func TestSessionInputNotRead(t *testing.T) {
	defer agent.SetInputTimeout(200 * time.Millisecond)()
	c, _ := newClient(t)
	ctx := ctxT(t)
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.WriteInput(ctx, s.ID, make([]byte, agentrpc.MaxInputSize))
	wantCode(t, "input nobody reads", err, agentrpc.CodeLimit)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WriteInput took %v, want about the 200ms input timeout", d)
	}
	c.Stop(ctx, agentrpc.StopRequest{ID: s.ID, Grace: time.Second})
}

// TestSessionRelativeProgram runs a program named relative to the cwd.
func TestSessionRelativeProgram(t *testing.T) {
	c, ws := newClient(t)
	os.MkdirAll(filepath.Join(ws, "bin"), 0o755)
	os.WriteFile(filepath.Join(ws, "bin", "hello.sh"), []byte("#!/bin/sh\necho hello from $0\n"), 0o755)
	s, err := c.Start(ctxT(t), agentrpc.StartRequest{Argv: []string{"./hello.sh"}, Cwd: "bin"})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readAll(t, c, s.ID)); got != "hello from ./hello.sh\n" {
		t.Errorf("output = %q, want %q", got, "hello from ./hello.sh\n")
	}
}

// TestSessionLotsOfOutput pushes 64 MiB through a session with the default
// cap: the session is never blocked on its output and the newest 8 MiB stay.
func TestSessionLotsOfOutput(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t)
	start := time.Now()
	s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"head", "-c", "67108864", "/dev/zero"}})
	if err != nil {
		t.Fatal(err)
	}
	end := waitEnd(t, c, s.ID)
	t.Logf("64 MiB of output captured in %v", time.Since(start))
	if code, ok := exitCode(end); !ok || code != 0 || end.OutputSize != 64<<20 {
		t.Fatalf("session = %+v, want exit 0 and 64 MiB of output", end)
	}
	o, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Offset: 0, Max: 16})
	if err != nil || o.Start != 56<<20 || o.Offset != 56<<20 || len(o.Data) != 16 {
		t.Errorf("read from 0 = offset %d start %d len %d, %v; want the kept range to start at 56 MiB", o.Offset, o.Start, len(o.Data), err)
	}
}

// TestSessionSignalWhileExiting signals sessions as their processes exit, so
// that some signals find the process already reaped but the session not yet
// recorded as ended (run with -race: the error path reads the session id
// while the session's end is being recorded).
func TestSessionSignalWhileExiting(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t)
	for i := range 200 {
		s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"true"}})
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; ; n++ {
			err := c.Signal(ctx, s.ID, "CONT")
			if err == nil {
				continue
			}
			wantCode(t, fmt.Sprintf("session %d: signal %d after exit", i, n), err, agentrpc.CodeNotRunning)
			break
		}
		if end := waitEnd(t, c, s.ID); end.State != agentrpc.StateExited || end.ExitCode != 0 {
			t.Errorf("session %d: %+v, want exited with code 0", i, end)
		}
	}
}
