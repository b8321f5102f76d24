// Command octo-agent runs one Linux user's octo sessions and file operations,
// serving the control plane over a Unix socket (usually socket-activated by
// systemd) and exiting when idle.
//
// Usage:
//
//	octo-agent serve [--socket PATH] [--workspace DIR] [--state-dir DIR]
//	                 [--allow-user NAME|UID ...] [--idle-timeout DUR] [--max-sessions N]
//	                 [--output-cap SIZE] [--output-budget SIZE] [--socket-mode OCTAL] [--user NAME] [--home DIR]
//	octo-agent version
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"octo/internal/agent"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: octo-agent serve [flags] | octo-agent version")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "version", "--version":
		fmt.Println("octo-agent", agent.Version)
	case "serve":
		opts, err := parseServe(os.Args[2:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "octo-agent serve:", err)
			os.Exit(2)
		}
		if n, ok := procs(os.Getenv); ok {
			runtime.GOMAXPROCS(n)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := serve(ctx, opts, log); err != nil {
			log.Error("octo-agent failed", "err", err)
			os.Exit(1)
		}
	case "dial": // placed by Slurm: dial the control plane's gateway (dial.go)
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := dialMain(ctx, os.Args[2:], log); err != nil {
			log.Error("octo-agent dial failed", "err", err)
			os.Exit(1)
		}
	case "help", "-h", "--help":
		fmt.Println("usage: octo-agent serve [flags] | octo-agent version\nRun \"octo-agent serve --help\" for the flags.")
	default:
		fmt.Fprintf(os.Stderr, "octo-agent: unknown command %q; use serve or version\n", os.Args[1])
		os.Exit(2)
	}
}

// dropTime removes the time attribute: journald adds its own.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// procs is the agent's GOMAXPROCS unless $GOMAXPROCS says otherwise: one.
// An agent serves one user and mostly waits on system calls (its sessions
// are processes of their own); with more Ps, the scheduler's cross-thread
// wakeups (spinning, futex, sysmon) were a third of its CPU. With one, a
// 1 KiB file GET cost the agent 12-13 us instead of 16-18 us of CPU, and
// 1 MiB GETs were as fast. It also keeps one user's agent to one core's
// worth of Go work on a shared machine.
func procs(getenv func(string) string) (n int, set bool) {
	if getenv("GOMAXPROCS") != "" {
		return 0, false
	}
	return 1, true
}
