package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"octo/internal/agent/agenttest"
	"octo/internal/tokens"
)

// startServe starts `octo serve` (this test binary) with ln passed as
// systemd would: fd 3, LISTEN_FDS=1, LISTEN_FDNAMES=http.
func startServe(t *testing.T, lnFile *os.File, cfg string, out io.Writer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--", "serve", "--config", cfg)
	// GORACE: under -race a process sleeps a second at exit, which would
	// hide how long stopping takes.
	cmd.Env = append(os.Environ(), "OCTO_TEST_MAIN=1", "OCTO_TEST_LISTEN_PID=1",
		"LISTEN_FDS=1", "LISTEN_FDNAMES=http", "GORACE=atexit_sleep_ms=0")
	cmd.ExtraFiles = []*os.File{lnFile}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

type lockedBuf struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// A restart hands the listening socket to the next process; requests that
// arrive while no process accepts wait in the kernel's queue. The client,
// sending requests through to the agent all along, sees no failure.
func TestRestartWithoutLoss(t *testing.T) {
	me, err := currentUser()
	if err != nil {
		t.Fatal(err)
	}
	sockDir, state := t.TempDir(), t.TempDir()
	if err := os.Symlink(agenttest.Start(t, ""), filepath.Join(sockDir, "agent-"+me.Name+".sock")); err != nil {
		t.Fatal(err)
	}
	store, err := tokens.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	secret, _, _ := store.Create(me.Name, "restart test", false)
	cfg := writeConfig(t, fmt.Sprintf(`[server]
listen = ""
api_socket = ""
state_dir = %q
shutdown_timeout = "10s"
[local]
socket_dir = %q
[users]
allow = [%q]
`, state, sockDir, me.Name))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // the socket lives on in lnFile, as in systemd
	url := "http://" + ln.Addr().String() + "/api/v1/status"
	logs := &lockedBuf{}

	first := startServe(t, lnFile, cfg, logs)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() error {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("first server does not answer: %v\n%s", err, logs)
	}

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := get(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	before := ok.Load()
	first.Process.Signal(syscall.SIGTERM)
	if err := first.Wait(); err != nil {
		t.Errorf("first server exited with %v, want status 0\n%s", err, logs)
	}
	time.Sleep(200 * time.Millisecond) // nobody accepts: connections queue in the kernel
	startServe(t, lnFile, cfg, logs)
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	after := ok.Load()

	t.Logf("requests: %d ok (%d before the restart), %d failed", after, before, failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed across the restart, first: %v\n%s", failed.Load(), firstErr.Load(), logs)
	}
	if before == 0 || after-before < 4 {
		t.Errorf("too few requests to mean anything: %d before, %d after", before, after-before)
	}
}
