package slurmbox

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"octo/e2e/box"
	"octo/internal/slurm"
)

//go:embed cluster.sh
var clusterScript string

// Conf is the path of slurm.conf inside the box; every Slurm client run
// through the cluster gets it as SLURM_CONF, so none looks the controller
// up in DNS.
const Conf = "/etc/slurm/slurm.conf"

// CtlAddr is the controller's address on the box's own network, where a
// control plane under test listens.
const CtlAddr = "10.99.1.1"

// Nodes are the compute hosts, and NodeAddrs their addresses.
var (
	Nodes     = []string{"h1", "h2"}
	NodeAddrs = map[string]string{"h1": "10.99.1.2", "h2": "10.99.2.2"}
)

// Cluster is a running Slurm cluster in a box.
type Cluster struct {
	Box   *box.Box
	Users []string
}

// Check reports why a cluster cannot run here (nil if it can).
func Check() error {
	if err := box.Check(); err != nil {
		return err
	}
	for _, tool := range []string{"slurmctld", "slurmd", "sbatch", "squeue", "scancel", "munged", "munge", "unmunge"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err2 := os.Stat("/usr/sbin/" + tool); err2 != nil {
				return fmt.Errorf("needs %s (run .ci/setup-slurm.sh): %w", tool, err)
			}
		}
	}
	return nil
}

// Start boots a box, builds the cluster with users (made in the box) and
// waits until both nodes are idle. It skips the test when the machine
// cannot run a cluster, or fails it when CI=true. The cluster is closed
// when the test ends.
func Start(t testing.TB, users ...string) *Cluster {
	t.Helper()
	if err := Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("slurm cluster cannot run and CI=true: %v", err)
		}
		t.Skipf("skipping slurm test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := box.Boot(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("boot box: %v", err)
	}
	c := &Cluster{Box: b, Users: users}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close slurm box: %v", err)
		}
	})
	if out, err := b.Run(ctx, "/bin/sh", "-ec", clusterScript, "cluster.sh", strings.Join(users, " ")); err != nil {
		t.Fatalf("build cluster: %v\n%s", err, out)
	}
	if err := c.waitIdle(ctx); err != nil {
		t.Fatalf("%v\n%s", err, c.Logs())
	}
	return c
}

// waitIdle waits until every node reports idle.
func (c *Cluster) waitIdle(ctx context.Context) error {
	var last string
	for {
		out, err := c.Run(ctx, "", "sinfo", "--noheader", "--Node", "--format=%N %t")
		last = strings.TrimSpace(out)
		if err == nil && strings.Count(last, " idle") == len(Nodes) {
			return nil
		}
		for _, u := range []string{"octo-slurmctld", "octo-slurmd-h1", "octo-slurmd-h2"} {
			if st, _ := c.Run(ctx, "", "systemctl", "is-active", u); strings.TrimSpace(st) != "active" {
				return fmt.Errorf("slurm daemon %s is %s; sinfo: %q", u, strings.TrimSpace(st), last)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("slurm nodes not idle: %w; sinfo: %q %v", ctx.Err(), last, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Command returns a command running argv in the box as user ("" is root),
// with SLURM_CONF set.
func (c *Cluster) Command(ctx context.Context, user string, argv ...string) *exec.Cmd {
	if user != "" {
		argv = append([]string{"runuser", "-u", user, "--"}, argv...)
	}
	cmd := c.Box.Command(ctx, argv...)
	cmd.Env = append(cmd.Env, "SLURM_CONF="+Conf)
	return cmd
}

// Run runs argv in the box as user ("" is root) and returns its standard
// output; its error carries the standard error.
func (c *Cluster) Run(ctx context.Context, user string, argv ...string) (string, error) {
	cmd := c.Command(ctx, user, argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return string(out), nil
}

// StopDaemon stops one of the cluster's daemons: "ctl" (slurmctld), "h1"
// or "h2" (that node's slurmd; its jobs keep running).
func (c *Cluster) StopDaemon(ctx context.Context, name string) error {
	unit := "octo-slurmd-" + name
	if name == "ctl" {
		unit = "octo-slurmctld"
	}
	_, err := c.Run(ctx, "", "systemctl", "stop", unit)
	return err
}

// StartDaemon starts a daemon StopDaemon stopped.
func (c *Cluster) StartDaemon(ctx context.Context, name string) error {
	_, err := c.Run(ctx, "", "/etc/slurm/octo-start", name)
	return err
}

// Logs returns the tail of the Slurm daemons' logs, for failure messages.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, f := range []string{"slurmctld.log", "slurmd-h1.log", "slurmd-h2.log"} {
		data, err := os.ReadFile(c.Box.Path("/var/log/octo-slurm/" + f))
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&b, "== %s (%v)\n%s\n", f, err, data)
	}
	return b.String()
}

// ErrNoNode is returned for a node name the cluster does not have.
var ErrNoNode = errors.New("no such node")

// NetnsPath is the host path of node's network namespace ("ctl" is the
// box's own).
func (c *Cluster) NetnsPath(node string) (string, error) {
	if node == "ctl" {
		return fmt.Sprintf("/proc/%d/ns/net", c.Box.PID()), nil
	}
	if _, ok := NodeAddrs[node]; !ok {
		return "", fmt.Errorf("%w: %q", ErrNoNode, node)
	}
	return c.Box.Path("/run/netns/" + node), nil
}

// Runner runs client programs in the box as user ("" is root): a
// slurm.Runner, as if on the controller's host.
func (c *Cluster) Runner(user string) slurm.Runner { return runner{c: c, user: user} }

// RunnerEnv is Runner with env added to the programs' environment.
func (c *Cluster) RunnerEnv(user string, env map[string]string) slurm.Runner {
	return runner{c, user, env}
}

type runner struct {
	c    *Cluster
	user string
	env  map[string]string
}

func (r runner) Run(ctx context.Context, stdin []byte, argv ...string) ([]byte, error) {
	cmd := r.c.Command(ctx, r.user, argv...)
	for k, v := range r.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &slurm.RunError{Argv: argv, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return out, nil
}
