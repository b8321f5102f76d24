package agent_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"octo/internal/agent"
	"octo/internal/agentrpc"
)

func TestInfo(t *testing.T) {
	c, ws := newClient(t)
	info, err := c.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.UID != uint32(os.Getuid()) || info.Workspace != ws || info.PID != os.Getpid() || info.User == "" {
		t.Errorf("Info = %+v, want uid %d, workspace %s, pid %d", info, os.Getuid(), ws, os.Getpid())
	}
	if time.Since(info.StartTime) > time.Minute || info.RunningSessions != 0 {
		t.Errorf("Info = %+v, want a recent start and no sessions", info)
	}
}

func TestSessionExitAndOutput(t *testing.T) {
	c, ws := newClient(t)
	if err := os.Mkdir(filepath.Join(ws, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		req      agentrpc.StartRequest
		wantOut  string
		wantCode int
		wantSig  string
	}{
		{"echo", agentrpc.StartRequest{Argv: []string{"echo", "hello"}}, "hello\n", 0, ""},
		{"merged in order", agentrpc.StartRequest{Argv: []string{"sh", "-c", "echo out; echo err >&2; echo out2"}}, "out\nerr\nout2\n", 0, ""},
		{"exit code", agentrpc.StartRequest{Argv: []string{"sh", "-c", "exit 7"}}, "", 7, ""},
		{"signal", agentrpc.StartRequest{Argv: []string{"sh", "-c", "kill -KILL $$"}}, "", -1, "KILL"},
		{"cwd", agentrpc.StartRequest{Argv: []string{"pwd"}, Cwd: "sub"}, filepath.Join(ws, "sub") + "\n", 0, ""},
		{"clean env", agentrpc.StartRequest{Argv: []string{"sh", "-c", "echo $HOME:$USER:${LISTEN_FDS-unset}:$FOO"}, Env: map[string]string{"FOO": "bar"}},
			home(t) + ":" + mustUser(t) + ":unset:bar\n", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := c.Start(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if s.ID == "" || s.PID == 0 || s.State == agentrpc.StateFailed || s.State == agentrpc.StateLost {
				t.Fatalf("Start = %+v, want a running session with id and pid", s)
			}
			out := readAll(t, c, s.ID)
			end := waitEnd(t, c, s.ID)
			if got := string(out); got != tt.wantOut {
				t.Errorf("output = %q, want %q", got, tt.wantOut)
			}
			if end.State != agentrpc.StateExited {
				t.Errorf("state = %s, want exited", end.State)
			}
			if tt.wantSig != "" {
				if _, ok := exitCode(end); end.Signal != tt.wantSig || ok {
					t.Errorf("signal = %q exit = %v, want signal %s", end.Signal, end.ExitCode, tt.wantSig)
				}
			} else if code, ok := exitCode(end); !ok || code != tt.wantCode {
				t.Errorf("exit code = %v, want %d", end.ExitCode, tt.wantCode)
			}
			if end.OutputSize != int64(len(tt.wantOut)) || end.EndTime.Before(end.StartTime) {
				t.Errorf("record = %+v, want output size %d and end after start", end, len(tt.wantOut))
			}
		})
	}
}

func home(t *testing.T) string {
	_, h, err := agent.CurrentUser()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustUser(t *testing.T) string {
	name, _, err := agent.CurrentUser()
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// exitCode returns a session's exit code, if it exited on its own.
func exitCode(s agentrpc.Session) (int, bool) {
	if s.State == agentrpc.StateExited && s.Signal == "" {
		return s.ExitCode, true
	}
	return 0, false
}

func TestSessionFailedToStart(t *testing.T) {
	c, _ := newClient(t)
	s, err := c.Start(ctxT(t), agentrpc.StartRequest{Argv: []string{"no-such-program-octo"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.State != agentrpc.StateFailed || !strings.Contains(s.Error, "not found") {
		t.Errorf("Start = %+v, want state failed with a not-found error", s)
	}
	list, err := c.Sessions(ctxT(t))
	if err != nil || len(list) != 1 || list[0].ID != s.ID {
		t.Errorf("Sessions = %+v, %v; want the failed session", list, err)
	}
}

func TestSessionInput(t *testing.T) {
	c, _ := newClient(t)
	s, err := c.Start(ctxT(t), agentrpc.StartRequest{Argv: []string{"cat"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteInput(ctxT(t), s.ID, []byte("abc\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseInput(ctxT(t), s.ID); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c, s.ID); !bytes.Equal(got, []byte("abc\n")) {
		t.Errorf("cat output = %q, want %q", got, "abc\n")
	}
	err = c.WriteInput(ctxT(t), s.ID, []byte("late"))
	wantCode(t, "WriteInput after end", err, agentrpc.CodeNotRunning)
}

// TestSessionRemove removes a finished session's record and output, and
// refuses a running one.
func TestSessionRemove(t *testing.T) {
	cfg := testConfig(t)
	c, stop := runServer(t, cfg)
	defer stop()
	ctx := ctxT(t)
	run, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	remove := func(id string) error {
		return c.Call(ctx, agentrpc.MethodSessionRemove, &agentrpc.SessionRef{ID: id}, &agentrpc.Empty{})
	}
	wantCode(t, "remove running", remove(run.ID), agentrpc.CodeInvalid)
	wantCode(t, "remove unknown", remove("0123456789abcdef"), agentrpc.CodeNotFound)
	if _, err := c.Stop(ctx, agentrpc.StopRequest{ID: run.ID, Grace: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := remove(run.ID); err != nil {
		t.Fatalf("remove stopped session: %v", err)
	}
	for what, err := range map[string]error{
		"get removed":    func() error { _, err := c.Session(ctx, run.ID); return err }(),
		"output removed": func() error { _, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: run.ID}); return err }(),
		"remove again":   remove(run.ID),
	} {
		wantCode(t, what, err, agentrpc.CodeNotFound)
	}
	if list, _ := c.Sessions(ctx); len(list) != 0 {
		t.Errorf("Sessions after remove = %+v, want none", list)
	}
	for _, ext := range []string{".json", ".out"} {
		if _, err := os.Stat(filepath.Join(cfg.StateDir, "sessions", run.ID+ext)); !os.IsNotExist(err) {
			t.Errorf("%s%s after remove: %v, want gone", run.ID, ext, err)
		}
	}
}
