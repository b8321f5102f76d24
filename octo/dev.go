package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"octo/internal/agent"
	"octo/internal/api"
	"octo/internal/backend"
	"octo/internal/config"
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

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	agentSock := filepath.Join(runDir, "agent.sock")
	agentDone, err := startDevAgent(ctx, me, ws, runDir, agentSock, log)
	if err != nil {
		return err
	}
	defer func() { cancel(); <-agentDone }()

	cfg := config.Default()
	cfg.Server.Listen = *listen
	cfg.Server.APISocket = filepath.Join(runDir, "octo.sock")
	cfg.Users = config.Users{Allow: []string{me.Name}, MinUID: 0}
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
	srv := api.New(api.Config{Pool: pool, Users: backend.NewUsers(cfg.Users), Tokens: store, Log: log,
		Version: version, MaxBodyBytes: int64(cfg.Server.MaxBodyBytes),
		AgentTimeout: cfg.Server.AgentTimeout.Duration, MaxStreamsPerUser: cfg.Server.MaxStreamsPerUser,
		MaxUploadsPerUser: cfg.Server.MaxUploadsPerUser, BodyReadTimeout: cfg.Server.BodyReadTimeout.Duration})
	lns, err := listeners(cfg.Server, log)
	if err != nil {
		return err
	}
	printDevBanner(lns, me.Name, ws, secret, *tokenFile)
	return serveHTTP(ctx, srv, lns, cfg.Server, log)
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
	u, err := user.Current()
	if err != nil {
		return backend.User{}, fmt.Errorf("who am I: %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return backend.User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}, nil
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
	tmp := path + ".tmp" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
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
	if addr != "" {
		fmt.Printf("  curl -H \"Authorization: Bearer $OCTO_TOKEN\" http://%s/api/v1/status\n", addr)
	}
	if sock != "" {
		fmt.Printf("  curl --unix-socket %s http://octo/api/v1/status\n", sock)
	}
	fmt.Println()
}
