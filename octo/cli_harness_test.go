package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/api"
	"octo/internal/backend"
	"octo/internal/client"
	"octo/internal/config"
	"octo/internal/tokens"
)

// cliEnv is a real control plane (Unix socket and TCP with a token) in
// front of a real in-process agent for the current user, for running the
// octo client commands against.
type cliEnv struct {
	t     *testing.T
	ws    string
	sock  string
	url   string
	token string
	c     *client.Client // over the Unix socket
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	me, err := currentUser()
	if err != nil {
		t.Fatal(err)
	}
	e := &cliEnv{t: t, ws: t.TempDir()}
	// Output kept up to 64 MiB: the 20 MB logs test reads a finished session whole.
	agentSock, _ := agenttest.StartServer(t, agent.Config{Workspace: e.ws, OutputCap: 64 << 20})
	router, err := backend.NewRouter(backend.RouterConfig{DevSocket: agentSock, DevUID: me.UID})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	pool := backend.NewPool(router, 2*time.Second, log)
	t.Cleanup(pool.Close)
	store, err := tokens.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if e.token, _, err = store.Create(me.Name, "cli test", false); err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Config{Pool: pool, Users: backend.NewUsers(config.Users{Allow: []string{me.Name}, MinUID: 0}),
		Tokens: store, Log: log, Version: "test", AgentTimeout: 10 * time.Second})

	e.sock = filepath.Join(t.TempDir(), "octo.sock")
	uln, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + tln.Addr().String()
	for _, l := range []struct {
		ln   net.Listener
		conn func(context.Context, net.Conn) context.Context
	}{{uln, api.ConnContext}, {tln, nil}} {
		hs := &http.Server{Handler: srv.Handler(), ConnContext: l.conn}
		go hs.Serve(l.ln)
		t.Cleanup(func() { hs.Close() })
	}
	e.c = client.NewUnix(e.sock)
	return e
}

// octo returns the octo command line args, run as a child process (the
// test binary doubles as octo) speaking to the Unix socket.
func (e *cliEnv) octo(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"--"}, args...)...)
	cmd.Env = append(os.Environ(), "OCTO_TEST_MAIN=1", "OCTO_SOCKET="+e.sock, "OCTO_URL=", "OCTO_TOKEN=")
	cmd.Dir = e.t.TempDir()
	return cmd
}

// overTCP makes cmd speak HTTP with the token instead.
func (e *cliEnv) overTCP(cmd *exec.Cmd) *exec.Cmd {
	cmd.Env = append(cmd.Env, "OCTO_URL="+e.url, "OCTO_TOKEN="+e.token, "OCTO_SOCKET=/nonexistent")
	return cmd
}

// result runs cmd and returns its stdout, stderr and exit status.
func result(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, status int) {
	t.Helper()
	var o, eb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &eb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		status = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return o.String(), eb.String(), status
}

// pty is the controlling side of a pseudo-terminal whose other side is a
// command's terminal; it collects what the command writes.
type pty struct {
	t      *testing.T
	master *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	closed chan struct{}
}

// startInPTY starts cmd with a new pseudo-terminal of rows x cols as its
// controlling terminal and stdin, stdout and stderr.
func startInPTY(t *testing.T, cmd *exec.Cmd, rows, cols uint16) *pty {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	p := &pty{t: t, master: master, closed: make(chan struct{})}
	p.resize(rows, cols)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.closed)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		master.Close()
	})
	return p
}

func (p *pty) resize(rows, cols uint16) {
	if err := unix.IoctlSetWinsize(int(p.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pty) write(s string) {
	if _, err := p.master.Write([]byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pty) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until the output contains want, failing after 10s.
func (p *pty) waitFor(want string) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.output(), want) {
		if time.Now().After(deadline) {
			p.t.Fatalf("terminal never showed %q; it shows:\n%q", want, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for cmd to exit and returns its exit status.
func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%v did not exit within 20s", cmd.Args)
		return -1
	}
}
