// Command octo-agent runs one Linux user's octo sessions and file operations,
// serving the control plane over a Unix socket (usually socket-activated by
// systemd) and exiting when idle.
//
// Usage:
//
//	octo-agent serve [--socket PATH] [--workspace DIR] [--state-dir DIR]
//	                 [--allow-user NAME|UID ...] [--idle-timeout DUR] [--max-sessions N]
//	                 [--output-cap SIZE] [--output-budget SIZE] [--socket-mode OCTAL] [--user NAME] [--home DIR]
//	octo-agent reload [--socket PATH] [--timeout DUR]
//	octo-agent version
//
// The agent Slurm places on a cluster node is octo-agent-dial, a binary of
// its own; `octo-agent dial [flags]`, its former name, runs it.
//
// reload (systemd's ExecReload) makes the running agent run the binary now
// installed at its path without ending its sessions, and waits until the
// new binary serves; it fails, with the reason, if the old one serves on.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"octo/internal/agent"
	"octo/internal/agentflags"
	"octo/internal/agentrpc"
	"octo/internal/logging"
)

func main() {
	// Security: the user's other processes may neither ptrace the agent nor
	// take its descriptors with pidfd_getfd (the listening socket octo
	// trusts). Installed as units/install.sh does (root's, mode 0711: its
	// user may execute it, not read it), the kernel made this process
	// non-dumpable at execve, before the descriptors systemd passed were
	// ever exposed. This call is the second line, for a binary its user can
	// read (a --user install, a copy elsewhere): from here on, before the
	// agent holds any descriptor it was not born with. Sessions are
	// dumpable again: exec resets it.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	log := logging.New()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: octo-agent serve [flags] | octo-agent reload [flags] | octo-agent version")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "version", "--version":
		// octo doctor reads the protocol to tell agents of another octo.
		fmt.Printf("octo-agent %s (protocol %s)\n", agent.Version, strings.TrimSpace(agentrpc.Preamble))
	case "serve":
		opts, err := agentflags.Parse(os.Args[2:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "octo-agent serve:", err)
			os.Exit(2)
		}
		if n, ok := procs(os.Getenv); ok {
			runtime.GOMAXPROCS(n)
		}
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		go stopOnSignal(ctx, stop)
		if err := serve(ctx, opts, log); err != nil {
			log.Error("octo-agent failed", "err", err)
			os.Exit(1)
		}
	case "reload":
		if err := reloadCmd(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "octo-agent reload:", err)
			if errors.As(err, new(usageError)) {
				os.Exit(2)
			}
			os.Exit(1)
		}
	case "handover-check":
		fmt.Println(checkLine())
	case "dial":
		err := execDial(os.Args[2:])
		log.Error("octo-agent dial failed", "err", err)
		os.Exit(1)
	case "help", "-h", "--help":
		fmt.Println("usage: octo-agent serve [flags] | octo-agent reload [flags] | octo-agent version\nRun \"octo-agent serve --help\" for the flags.")
	default:
		fmt.Fprintf(os.Stderr, "octo-agent: unknown command %q; use serve, reload or version\n", os.Args[1])
		os.Exit(2)
	}
}

// stopOnSignal calls stop on SIGTERM or SIGINT. The agent watches for them
// beside its start rather than before it: the first watch makes the Go
// runtime start its signal thread and wait for it, 0.3 ms of every first
// request's wait. Until then, a signal ends the agent by its default
// action, as it would before main.
func stopOnSignal(ctx context.Context, stop context.CancelFunc) {
	ctx, unwatch := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer unwatch()
	<-ctx.Done()
	stop()
}

// execDial runs octo-agent-dial, installed beside this binary, in this
// process with args: `octo-agent dial` was the Slurm agent's command before
// it was a binary of its own, and slurm.agent_command may still say it.
func execDial(args []string) error {
	dial := filepath.Join(filepath.Dir(executable()), "octo-agent-dial")
	err := syscall.Exec(dial, append([]string{dial}, args...), os.Environ())
	return fmt.Errorf("run %s: %w (octo-agent dial is octo-agent-dial now: install it beside octo-agent, and set slurm.agent_command to it)", dial, err)
}

// procs is the agent's GOMAXPROCS unless $GOMAXPROCS says otherwise: one.
// An agent serves one user and mostly waits on system calls (its sessions
// are processes of their own); with more Ps, the scheduler's cross-thread
// wakeups (spinning, futex, sysmon) cost more CPU per call than they saved
// (the README's note on GOMAXPROCS has the measurement). It also keeps one
// user's agent to one core's worth of Go work on a shared machine.
func procs(getenv func(string) string) (n int, set bool) {
	if getenv("GOMAXPROCS") != "" {
		return 0, false
	}
	return 1, true
}
