package main

import (
	"context"
	"errors"
	"fmt"
	"net/rpc"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// TestReloadCommandErrors: usage mistakes exit 2, an agent that cannot be
// reached 1, each with a message.
func TestReloadCommandErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"reload", "--bogus"}, 2, "not defined"},
		{[]string{"reload", "extra"}, 2, "unexpected argument"},
		{[]string{"reload", "--socket", filepath.Join(t.TempDir(), "none.sock")}, 1, "reach the agent"},
	}
	for _, tt := range tests {
		out, err := exec.Command(agentBin, tt.args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != tt.code || !strings.Contains(string(out), tt.msg) {
			t.Errorf("octo-agent %v = %v, %q; want exit %d saying %q", tt.args, err, out, tt.code, tt.msg)
		}
	}
}

// TestReloadRunsEveryCallOnce writes numbered lines to a session's input
// from three clients while the agent reloads again and again: a call the
// agent refuses (code reloading) is repeated on a new connection, as octo's
// pool does, and every acknowledged line reaches the session exactly once,
// in order: no call is lost or run twice, and none fails.
func TestReloadRunsEveryCallOnce(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "octo-agent")
	install(t, agentBin, bin)
	sock := filepath.Join(dir, "agent.sock")
	ws := filepath.Join(dir, "ws")
	os.Mkdir(ws, 0o755)
	cmd := exec.Command(bin, "serve", "--socket", sock, "--workspace", ws, "--state-dir", filepath.Join(dir, "state"), "--idle-timeout", "0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
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
	c := dialAgent(t, sock)
	cat, err := c.Start(ctxT(t), agentrpc.StartRequest{Argv: []string{"cat"}})
	if err != nil {
		t.Fatal(err)
	}
	const writers = 3
	var refused atomic.Int64
	sent := make([]int, writers)
	errs := make(chan error, writers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var wc *agentrpc.Client
			defer func() {
				if wc != nil {
					wc.Close()
				}
			}()
			for i := 0; ; {
				select {
				case <-stop:
					return
				default:
				}
				if wc == nil {
					var err error
					if wc, err = agentrpc.Dial(context.Background(), "unix", sock); err != nil {
						errs <- err
						return
					}
				}
				err := wc.WriteInput(context.Background(), cat.ID, []byte(fmt.Sprintf("%d %d\n", w, i)))
				switch {
				case err == nil:
					i++
					sent[w] = i
				case errors.Is(err, agentrpc.ErrReloading), errors.Is(err, rpc.ErrShutdown):
					if errors.Is(err, agentrpc.ErrReloading) {
						refused.Add(1)
					}
					wc.Close() // not run: repeat it on a new connection
					wc = nil
				default:
					errs <- fmt.Errorf("writer %d, line %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	for range 8 {
		time.Sleep(50 * time.Millisecond)
		if out, err := exec.Command(bin, "reload", "--socket", sock).CombinedOutput(); err != nil {
			t.Fatalf("reload: %v\n%s", err, out)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c = dialAgent(t, sock)
	if err := c.CloseInput(ctxT(t), cat.ID); err != nil {
		t.Fatal(err)
	}
	out := outputUntil(t, c, cat.ID, "")
	for !strings.HasSuffix(out, "\n") || len(strings.Split(out, "\n"))-1 < sent[0]+sent[1]+sent[2] {
		o, err := c.ReadOutput(ctxT(t), agentrpc.OutputRequest{ID: cat.ID, Offset: int64(len(out)), Wait: 5 * time.Second})
		if err != nil || o.Done && len(o.Data) == 0 {
			break
		}
		out += string(o.Data)
	}
	next := make([]int, writers)
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var w, i int
		if _, err := fmt.Sscanf(l, "%d %d", &w, &i); err != nil || w < 0 || w >= writers || i != next[w] {
			t.Fatalf("line %q: want writer %d's line %d next (lines lost, repeated or reordered)", l, w, next[max(0, min(w, writers-1))])
		}
		next[w]++
	}
	for w := range writers {
		if next[w] != sent[w] {
			t.Errorf("writer %d: %d lines acknowledged, %d arrived", w, sent[w], next[w])
		}
	}
	t.Logf("%d lines written across 8 reloads, %d calls refused and repeated", sent[0]+sent[1]+sent[2], refused.Load())
	if refused.Load() == 0 {
		t.Errorf("no call was refused: the writers did not overlap the hand-overs")
	}
}
