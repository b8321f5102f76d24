package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/backend"
	"octo/internal/slurm"
)

// AgentRunner runs a program as a session of the user's local agent: as
// the user, so that sbatch and scancel act with the user's uid and MUNGE
// credential, and octo forks nothing. It is a slurm.Runner; stdin is not
// supported.
type AgentRunner struct {
	Pool *backend.Pool // reaches the users' local agents
	User backend.User
	Env  map[string]string
}

// maxOutput bounds what a client program may print.
const maxOutput = 64 << 10

// Run implements slurm.Runner.
func (r AgentRunner) Run(ctx context.Context, stdin []byte, argv ...string) ([]byte, error) {
	if len(stdin) > 0 {
		return nil, errors.New("agent runner: no standard input")
	}
	var sess agentrpc.Session
	if _, err := r.Pool.Do(ctx, r.User, backend.Once, func(c *agentrpc.Client) (err error) {
		sess, err = c.Start(ctx, agentrpc.StartRequest{Argv: argv, Env: r.Env, Name: "octo-" + argv[0]})
		return err
	}); err != nil {
		return nil, fmt.Errorf("run %s as %s through the local agent: %w", argv[0], r.User.Name, err)
	}
	var out []byte
	for {
		var o agentrpc.Output
		if _, err := r.Pool.Do(ctx, r.User, backend.Repeatable, func(c *agentrpc.Client) (err error) {
			o, err = c.ReadOutput(ctx, agentrpc.OutputRequest{ID: sess.ID, Offset: int64(len(out)), Wait: 5 * time.Second})
			return err
		}); err != nil {
			return out, fmt.Errorf("read %s output: %w", argv[0], err)
		}
		if len(out)+len(o.Data) > maxOutput {
			return out, fmt.Errorf("%s printed over %d bytes", argv[0], maxOutput)
		}
		out = append(out, o.Data...)
		if o.Done {
			break
		}
	}
	if _, err := r.Pool.Do(ctx, r.User, backend.Repeatable, func(c *agentrpc.Client) (err error) {
		sess, err = c.Session(ctx, sess.ID)
		return err
	}); err != nil {
		return out, err
	}
	if sess.State != agentrpc.StateExited || sess.ExitCode != 0 || sess.Signal != "" {
		why := fmt.Errorf("session %s: state %s, exit %d %s %s", sess.ID, sess.State, sess.ExitCode, sess.Signal, sess.Error)
		return out, &slurm.RunError{Argv: argv, Stderr: strings.TrimSpace(string(out)), Err: why}
	}
	return out, nil
}
