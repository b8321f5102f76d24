package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"octo/internal/api"
	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/container"
	"octo/internal/tokens"
)

func serveCmd(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: serve takes no arguments", errUsage)
	}
	cfg, err := config.Load(configPath(*path))
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		log.Warn("running as root; the control plane is meant to run as the unprivileged user octo")
	}
	store, err := tokens.Open(cfg.Server.StateDir)
	if err != nil {
		return err
	}
	defer store.Close()
	router, err := newRouter(cfg, log)
	if err != nil {
		return err
	}
	pool := backend.NewPool(router, cfg.Local.ConnectTimeout.Duration, log)
	defer pool.Close()
	srv := api.New(api.Config{
		Pool: pool, Users: backend.NewUsers(cfg.Users), Tokens: store, Log: log, Version: version,
		MaxBodyBytes: int64(cfg.Server.MaxBodyBytes), AgentTimeout: cfg.Server.AgentTimeout.Duration,
		MaxStreamsPerUser: cfg.Server.MaxStreamsPerUser,
		MaxUploadsPerUser: cfg.Server.MaxUploadsPerUser, BodyReadTimeout: cfg.Server.BodyReadTimeout.Duration,
	})
	lns, err := listeners(cfg.Server, log)
	if err != nil {
		return err
	}
	log.Info("octo serving", "version", version, "mode", cfg.Backend.Mode, "config", configPath(*path))
	return serveHTTP(ctx, srv, lns, cfg.Server, log)
}

func newRouter(cfg config.Config, log *slog.Logger) (*backend.Router, error) {
	rc := backend.RouterConfig{Mode: cfg.Backend.Mode, Local: cfg.Local, Container: cfg.Container.SocketDir}
	if cfg.Backend.Mode != config.ModeLocal {
		rt, err := container.New(cfg.Container, log.With("backend", "container"))
		if err != nil {
			return nil, fmt.Errorf("container backend: %w", err)
		}
		rc.Runtime = rt
	}
	return backend.NewRouter(rc)
}

// serveHTTP serves the API on every listener until ctx is done, then stops
// accepting, lets in-flight requests finish (bounded by
// server.shutdown_timeout) and returns.
func serveHTTP(ctx context.Context, srv *api.Server, lns []namedListener, sc config.Server, log *slog.Logger) error {
	errc := make(chan error, len(lns))
	var servers []*http.Server
	var serving sync.WaitGroup
	var stopping atomic.Bool
	drain := newDrainer()
	for _, nl := range lns {
		hs := &http.Server{
			Handler:           drain.handler(srv.Handler()),
			ConnState:         drain.connState,
			ReadHeaderTimeout: sc.ReadHeaderTimeout.Duration,
			MaxHeaderBytes:    int(sc.MaxHeaderBytes),
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		hs.ConnContext = drain.connContext(nil)
		if nl.unix {
			hs.ConnContext = drain.connContext(api.ConnContext)
		}
		servers = append(servers, hs)
		log.Info("listening", "name", nl.name, "addr", nl.ln.Addr().String(), "inherited", nl.inherited)
		serving.Add(1)
		go func() {
			defer serving.Done()
			if err := hs.Serve(nl.ln); !errors.Is(err, http.ErrServerClosed) && !stopping.Load() {
				errc <- fmt.Errorf("serve %s: %w", nl.name, err)
			}
		}()
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)
	var err error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case err = <-errc:
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	sctx, cancel := context.WithTimeout(context.Background(), sc.ShutdownTimeout.Duration)
	defer cancel()
	// Stop accepting; with socket activation, new connections now wait in
	// the kernel for the next instance.
	stopping.Store(true)
	closeAll(lns)
	waitGroup(sctx, &serving)
	// Answer every connection already accepted, then shut down.
	drain.wait(sctx)
	for _, hs := range servers {
		if err := hs.Shutdown(sctx); err != nil {
			log.Warn("shutdown incomplete: closing remaining connections", "err", err)
			hs.Close()
		}
	}
	return err
}

func waitGroup(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

type namedListener struct {
	name      string // "http" or "api"
	ln        net.Listener
	unix      bool
	inherited bool
}
