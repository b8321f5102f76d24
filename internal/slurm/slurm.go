// Package slurm submits, lists and cancels octo's agent jobs with Slurm's
// clients (sbatch, squeue, scancel, sinfo) and decodes MUNGE credentials.
package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// JobName is the name of every agent job; with --dependency=singleton,
// Slurm runs at most one job of that name per user.
const JobName = "octo-agent"

// CommentPrefix starts the comment of an agent job; the launch id follows.
const CommentPrefix = "octo-launch:"

// Runner runs a client program (argv[0] is its name) with stdin and returns
// its standard output; a failure's error carries its standard error.
type Runner interface {
	Run(ctx context.Context, stdin []byte, argv ...string) ([]byte, error)
}

// Exec runs programs as this process, with SLURM_CONF set to Conf (when not
// empty) so that no client looks its controller up in DNS.
type Exec struct {
	Conf string
}

// Run implements Runner.
func (e Exec) Run(ctx context.Context, stdin []byte, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("run: no program")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	if e.Conf != "" {
		cmd.Env = append(cmd.Env, "SLURM_CONF="+e.Conf)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &RunError{Argv: argv, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return out, nil
}

// RunError is a client program that failed.
type RunError struct {
	Argv   []string
	Stderr string
	Err    error
}

func (e *RunError) Error() string {
	msg := e.Stderr
	if len(msg) > 500 {
		msg = msg[:500] + "..."
	}
	return fmt.Sprintf("%s: %s: %v", e.Argv[0], msg, e.Err)
}

func (e *RunError) Unwrap() error { return e.Err }
