// Command octo-agent-dial is the octo agent Slurm places on a cluster
// node: instead of listening on a Unix socket, it dials the control plane's
// gateway over TLS (the job's environment says where, and how to prove
// itself), and serves the same agent protocol on that link.
//
// Usage:
//
//	octo-agent-dial [octo-agent serve's flags]
//	octo-agent-dial version
//
// It is a binary of its own so that the TLS client it needs stays out of
// octo-agent, whose every idle instance on a machine maps the pages of the
// code it is built with (units/README.md has the numbers).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"octo/internal/agent"
	"octo/internal/agentflags"
	"octo/internal/agentrpc"
	"octo/internal/logging"
)

func main() {
	// Security: as in octo-agent (its main says why): no ptrace and no
	// pidfd_getfd of this agent by the user's other processes, even for a
	// binary its user can read.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "version", "--version":
			fmt.Printf("octo-agent-dial %s (protocol %s)\n", agent.Version, strings.TrimSpace(agentrpc.Preamble))
			return
		case "help", "-h", "--help":
			fmt.Println("usage: octo-agent-dial [flags] | octo-agent-dial version\nIt runs in a Slurm job octo submitted; the flags are octo-agent serve's (octo-agent-dial --flags lists them).")
			return
		case "--flags":
			agentflags.Parse([]string{"--help"}) // prints them and exits
		}
	}
	log := logging.New()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := dialMain(ctx, os.Args[1:], log); err != nil {
		log.Error("octo-agent-dial failed", "err", err)
		os.Exit(1)
	}
}
