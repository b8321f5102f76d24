package agent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

// newClient starts an agent with a fresh workspace and returns a client and
// the workspace path.
func newClient(t testing.TB) (*agentrpc.Client, string) {
	t.Helper()
	ws := t.TempDir()
	sock := agenttest.Start(t, ws)
	return dial(t, sock), ws
}

func dial(t testing.TB, sock string) *agentrpc.Client {
	t.Helper()
	c, err := agentrpc.Dial(context.Background(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails the test unless err carries code.
func wantCode(t testing.TB, what string, err error, code agentrpc.Code) {
	t.Helper()
	if got := agentrpc.CodeOf(err); got != code {
		t.Errorf("%s: error %v has code %q, want %q", what, err, got, code)
	}
	var sentinel = map[agentrpc.Code]error{
		agentrpc.CodeNotFound: agentrpc.ErrNotFound, agentrpc.CodeExists: agentrpc.ErrExists,
		agentrpc.CodePermission: agentrpc.ErrPermission, agentrpc.CodeInvalid: agentrpc.ErrInvalid,
		agentrpc.CodeOutsideWorkspace: agentrpc.ErrOutsideWorkspace, agentrpc.CodeTooLarge: agentrpc.ErrTooLarge,
		agentrpc.CodeLimit: agentrpc.ErrLimit, agentrpc.CodeInternal: agentrpc.ErrInternal, agentrpc.CodeReloading: agentrpc.ErrReloading,
		agentrpc.CodeNotRunning: agentrpc.ErrNotRunning,
	}[code]
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("%s: errors.Is(%v, %v) = false", what, err, sentinel)
	}
}

// waitEnd polls a session until it is no longer running.
func waitEnd(t testing.TB, c *agentrpc.Client, id string) agentrpc.Session {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := c.Session(ctxT(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if s.State != agentrpc.StateRunning {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s still running after 20s: %+v", id, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readAll reads a session's output until Done.
func readAll(t testing.TB, c *agentrpc.Client, id string) []byte {
	t.Helper()
	var out []byte
	var off int64
	for i := 0; ; i++ {
		o, err := c.ReadOutput(ctxT(t), agentrpc.OutputRequest{ID: id, Offset: off, Wait: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Data...)
		off = o.Next
		if o.Done {
			return out
		}
		if i > 10000 {
			t.Fatal("output never done")
		}
	}
}
