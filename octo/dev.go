package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"octo/internal/agent"
	"octo/internal/api"
	"octo/internal/atomicfile"
	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/metrics"
	"octo/internal/passwd"
	"octo/internal/tokens"
)

// devCmd runs the control plane for the invoking user together with their
// agent, served in-process on a Unix socket in a private runtime directory:
// the same net/rpc path as in production, without systemd.
func devCmd(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:3000", "TCP address of the HTTP API")
	workspace := fs.String("workspace", "", "the agent's workspace (default: the current directory)")
	tokenFile := fs.String("token-file", "", "also write the token to this file (0600)")
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: dev takes no arguments", errUsage)
	}
	ws, err := devWorkspace(*workspace)
	if err != nil {
		return err
	}
	me, err := currentUser()
	if err != nil {
		return err
	}
	runDir, err := os.MkdirTemp("", "octo-dev-") // 0700
	if err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	defer os.RemoveAll(runDir)

	// Bind first: a busy port is the likely mistake, and nothing else
	// should have started (and be stopped again) when it is reported.
	cfg := config.Default()
	cfg.Server.Listen = ""
	cfg.Server.APISocket = filepath.Join(runDir, "octo.sock")
	cfg.Users = config.Users{Allow: []string{me.Name}, MinUID: 0}
	lns, err := devListeners(*listen, cfg.Server, log)
	if err != nil {
		return err
	}
	defer closeAll(lns) // serveHTTP closes them too; this is for the errors before

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	agentSock := filepath.Join(runDir, "agent.sock")
	agentDone, err := startDevAgent(ctx, me, ws, runDir, agentSock, log)
	if err != nil {
		return err
	}
	defer func() { cancel(); <-agentDone }()

	store, err := tokens.Open(filepath.Join(runDir, "state"))
	if err != nil {
		return err
	}
	defer store.Close()
	secret, _, err := store.Create(me.Name, "octo dev", false)
	if err != nil {
		return err
	}
	if *tokenFile != "" {
		if err := writeTokenFile(*tokenFile, secret); err != nil {
			return err
		}
	}
	router, err := backend.NewRouter(backend.RouterConfig{DevSocket: agentSock, DevUID: me.UID})
	if err != nil {
		return err
	}
	pool := backend.NewPool(router, cfg.Local.ConnectTimeout.Duration, log)
	defer pool.Close()
	srv := api.New(apiConfig(cfg, pool, store, metrics.New(version), log))
	printDevBanner(lns, me.Name, ws, secret, *tokenFile)
	return serveHTTP(ctx, srv, lns, cfg.Server, log)
}

// devListeners binds the TCP address of --listen and the Unix socket in
// sc. Dev mode has no config file, so its errors name the flag.
func devListeners(addr string, sc config.Server, log *slog.Logger) ([]namedListener, error) {
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: choose another address with --listen (e.g. --listen 127.0.0.1:0 for any free port): %w", addr, err)
	}
	lns, err := listeners(sc, log)
	if err != nil {
		tcp.Close()
		return nil, err
	}
	return append([]namedListener{{name: "http", ln: tcp}}, lns...), nil
}

func devWorkspace(flagValue string) (string, error) {
	ws := flagValue
	if ws == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("workspace: %w", err)
		}
		ws = wd
	}
	ws, err := filepath.Abs(ws)
	if err != nil {
		return "", fmt.Errorf("workspace: %w", err)
	}
	if fi, err := os.Stat(ws); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("workspace %s: not a directory (use --workspace DIR)", ws)
	}
	return ws, nil
}

func currentUser() (backend.User, error) {
	e, err := passwd.Current()
	if err != nil {
		return backend.User{}, fmt.Errorf("who am I: %w", err)
	}
	return backend.User{Name: e.Name, UID: e.UID, GID: e.GID, Home: e.Home}, nil
}

// startDevAgent serves the agent for me on sock until ctx ends; the returned
// channel closes when it has stopped.
func startDevAgent(ctx context.Context, me backend.User, ws, runDir, sock string, log *slog.Logger) (<-chan struct{}, error) {
	srv, err := agent.New(agent.Config{
		User: me.Name, UID: me.UID, GID: me.GID, Home: me.Home, Workspace: ws,
		StateDir: filepath.Join(runDir, "agent-state"), Logger: log.With("component", "agent"),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("agent stopped", "err", err)
		}
	}()
	return done, nil
}

func writeTokenFile(path, secret string) error {
	if err := atomicfile.Write(path, []byte(secret+"\n"), 0o600, atomicfile.Options{}); err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	return nil
}

func printDevBanner(lns []namedListener, name, ws, secret, tokenFile string) {
	addr, sock := "", ""
	for _, nl := range lns {
		if nl.unix {
			sock = nl.ln.Addr().String()
		} else {
			addr = nl.ln.Addr().String()
		}
	}
	fmt.Printf("octo dev: serving %s, workspace %s\n", name, ws)
	if tokenFile != "" {
		fmt.Printf("token written to %s\n", tokenFile)
	}
	fmt.Printf("\n  export OCTO_TOKEN=%s\n", secret)
	if sock != "" {
		fmt.Printf("  export OCTO_SOCKET=%s   # for octo run, ps, logs, cp, ls\n", sock)
	}
	if addr != "" {
		fmt.Printf("  curl -H \"Authorization: Bearer $OCTO_TOKEN\" http://%s/api/v1/status\n", addr)
	}
	if sock != "" {
		fmt.Printf("  curl --unix-socket %s http://octo/api/v1/status\n", sock)
	}
	fmt.Println()
}
