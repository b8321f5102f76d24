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
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := serve(ctx, opts, log); err != nil {
			log.Error("octo-agent failed", "err", err)
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
