package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// BenchmarkFirstAnswer is the agent's own share of a cold start: from
// starting the binary, socket-activated as systemd does it (fd 3,
// LISTEN_FDS), to the answer of its first call (the preamble and Info, as
// octo's status call makes them), against the activation floor
// (bench/floor: a trivial Go HTTP service) started the same way and asked
// one GET. Neither runs under systemd, so the sandbox and the cgroup are
// left out: what remains is the binary's start and its first answer. Both
// are built as units/install.sh builds them (CGO_ENABLED=0, -trimpath) and
// started in turn, so that the machine's noise falls on both alike.
func BenchmarkFirstAnswer(b *testing.B) {
	dir := b.TempDir()
	agent, floor := filepath.Join(dir, "octo-agent"), filepath.Join(dir, "floor")
	for bin, pkg := range map[string]string{agent: ".", floor: "../bench/floor"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	ws := filepath.Join(dir, "ws")
	if err := os.Mkdir(ws, 0o700); err != nil {
		b.Fatal(err)
	}
	agentEnv := []string{"GOMAXPROCS=1"} // as octo-agent@.service sets it
	agentArgs := []string{"serve", "--workspace", ws, "--state-dir", filepath.Join(dir, "state"), "--idle-timeout", "0"}
	var agentT, floorT []time.Duration
	for i := 0; i < b.N; i++ {
		floorT = append(floorT, firstAnswer(b, dir, floor, nil, nil, func(sock string) error {
			c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}}
			resp, err := c.Get("http://floor/")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.ReadAll(resp.Body)
			return err
		}))
		agentT = append(agentT, firstAnswer(b, dir, agent, agentEnv, agentArgs, func(sock string) error {
			c, err := agentrpc.Dial(context.Background(), "unix", sock)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Info(context.Background())
			return err
		}))
	}
	med := func(d []time.Duration) time.Duration { s := slices.Clone(d); slices.Sort(s); return s[len(s)/2] }
	b.ReportMetric(float64(med(agentT).Microseconds()), "agent-µs")
	b.ReportMetric(float64(med(floorT).Microseconds()), "floor-µs")
	b.ReportMetric(float64(med(agentT))/float64(med(floorT)), "ratio")
	b.ReportMetric(0, "ns/op")
}

// firstAnswer starts bin with a listening socket as fd 3 and env added to
// its environment, and returns how long ask took to get its first answer
// from it; then it stops bin.
func firstAnswer(b *testing.B, dir, bin string, env, args []string, ask func(sock string) error) time.Duration {
	sock := filepath.Join(dir, "first.sock")
	os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.File()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LISTEN_FDS=1"}, env...)
	cmd.ExtraFiles = []*os.File{f}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	err = ask(sock)
	d := time.Since(t0)
	cmd.Process.Kill()
	cmd.Wait()
	if err != nil {
		b.Fatalf("%s: first call: %v", filepath.Base(bin), err)
	}
	return d
}
