// Command octo is the control plane: an HTTP API that authenticates callers
// and relays their requests to their own per-user agent.
//
// Usage:
//
//	octo serve [--config PATH]
//	octo dev [--listen ADDR] [--workspace DIR] [--token-file PATH]
//	octo token create USER [--admin] [--name TEXT] [--config PATH]
//	octo token list [--config PATH]
//	octo token revoke ID [--config PATH]
//	octo check-config [PATH | --config PATH]
//	octo doctor [--config PATH] [--user NAME]...
//	octo reload PID
//	octo agent-slices DIR [EARLY-DIR LATE-DIR]   (systemd runs it as a generator; units/README.md)
//	octo version
//	octo run|attach|ps|logs|stop|signal|rm|cp|ls ...   (the API's client; octo help lists them)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"octo/internal/config"
	"octo/internal/logging"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage:
  octo serve [--config PATH]          run the control plane
  octo dev [--listen ADDR] [--workspace DIR] [--token-file PATH]
                                      control plane + agent for you, for trying octo out
  octo token create USER [--admin] [--name TEXT]
  octo token list
  octo token revoke ID
  octo check-config [PATH | --config PATH]
  octo doctor [--user NAME]...        check the installation, say what to fix
  octo reload PID                     make octo serve (PID) read its TLS certificate again
  octo version
The config is --config, else $OCTO_CONFIG, else /etc/octo/config.toml.
`

// errUsage marks command-line mistakes (exit status 2).
var errUsage = errors.New("usage")

func main() {
	log := logging.New()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], log)
	stop()
	st, passOn := exitStatus(err)
	switch {
	case passOn: // a session's exit status
		os.Exit(st)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "octo: %v\n%s%s", err, usage, clientUsage)
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "octo: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		tuneGC()
		return serveCmd(ctx, rest, log)
	case "dev":
		tuneGC()
		return devCmd(ctx, rest, log)
	case "token":
		return tokenCmd(rest)
	case "check-config":
		return checkConfigCmd(rest)
	case "reload":
		return reloadCmd(rest)
	case "doctor":
		return doctorCmd(ctx, rest)
	case "agent-slices":
		return agentSlicesCmd(rest)
	case "version", "--version":
		fmt.Println("octo", version)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage + clientUsage)
		return nil
	default:
		if c, ok := clientCommands[cmd]; ok {
			return c(ctx, rest)
		}
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// gcPercent is the servers' GC target unless $GOGC says otherwise. The live
// heap is a few MiB and every request allocates, so the default 100 collects
// dozens of times a second under load; 400 costs some RSS and buys more
// 1 KiB GETs per second (bench/nginx-compare.sh; the README's performance
// notes have the figures).
const gcPercent = 400

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// configPath picks --config, else $OCTO_CONFIG, else the default.
func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("OCTO_CONFIG"); env != "" {
		return env
	}
	return config.DefaultPath
}

// parseArgs parses flags that may come before or after positional arguments
// and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(os.Stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func checkConfigCmd(args []string) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	pos, err := parseArgs(fs, args)
	switch {
	case err != nil:
		return err
	case len(pos) > 1 || len(pos) == 1 && *path != "":
		return fmt.Errorf("%w: check-config takes one config file, as --config PATH or PATH", errUsage)
	case len(pos) == 1:
		*path = pos[0]
	}
	p := configPath(*path)
	cfg, err := config.Load(p)
	if err != nil {
		return err
	}
	if warning, err := checkTLS(cfg.Server); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	} else if warning != "" {
		fmt.Printf("%s: warning: %s\n", p, warning)
	}
	if _, err := os.Stat(p); err != nil {
		fmt.Printf("%s: no such file; the defaults apply (backend.mode %s)\n", p, cfg.Backend.Mode)
		return nil
	}
	fmt.Printf("%s: OK (backend.mode %s)\n", p, cfg.Backend.Mode)
	return nil
}
