package main

import (
	"context"
	"crypto/tls"
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
	"octo/internal/metrics"
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
	var router *backend.Router
	if cfg.Backend.Mode == config.ModeSlurm {
		router, err = slurmRouter(ctx, cfg, log) // slurm.go
	} else {
		router, err = newRouter(cfg, log)
	}
	if err != nil {
		return err
	}
	pool := backend.NewPool(router, cfg.Local.ConnectTimeout.Duration, log)
	defer pool.Close()
	m := metrics.New(version)
	srv := api.New(apiConfig(cfg, pool, store, m, log))
	if addr := cfg.Server.MetricsListen; addr != "" {
		stop, err := serveMetricsListener(addr, m, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	tlsCerts, err := loadCerts(cfg.Server)
	if err != nil {
		return err
	}
	lns, err := listeners(cfg.Server, log)
	if err != nil {
		return err
	}
	useTLS(lns, tlsCerts, log)
	defer reloadOnHUP(ctx, tlsCerts, log)()
	log.Info("octo serving", "version", version, "mode", cfg.Backend.Mode, "config", configPath(*path))
	return serveHTTP(ctx, srv, lns, cfg.Server, log)
}

// apiConfig is the API's configuration from octo's (serve and dev); it
// also has the pool count its agent connections in m.
func apiConfig(cfg config.Config, pool *backend.Pool, store *tokens.Store, m *metrics.Metrics, log *slog.Logger) api.Config {
	pool.Connected = func(_ backend.User, ep backend.Endpoint) { m.AgentConnect(string(ep.Placement)) }
	pool.Called = m.AgentMethodCall
	return api.Config{
		Pool: pool, Users: backend.NewUsers(cfg.Users), Tokens: store, Log: log, Version: version,
		MaxBodyBytes: int64(cfg.Server.MaxBodyBytes), AgentTimeout: cfg.Server.AgentTimeout.Duration,
		MaxStreamsPerUser: cfg.Server.MaxStreamsPerUser, MaxRequestsPerUser: cfg.Server.MaxRequestsPerUser,
		MaxUploadsPerUser: cfg.Server.MaxUploadsPerUser, BodyReadTimeout: cfg.Server.BodyReadTimeout.Duration,
		Metrics: m, QuietReads: !cfg.Server.AccessLogReads,
	}
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

// serveHTTP serves the API on every listener until ctx is done, then
// drains: it stops accepting (with socket activation, new connections wait
// in the kernel for the next instance), closes each connection after its
// next response, ends output streams at the end of server.drain_window,
// lets in-flight requests finish (bounded by server.shutdown_timeout) and
// returns.
func serveHTTP(ctx context.Context, srv *api.Server, lns []namedListener, sc config.Server, log *slog.Logger) error {
	errc := make(chan error, len(lns))
	var servers []*http.Server
	var serving sync.WaitGroup
	var stopping atomic.Bool
	drain := newDrainer()
	for _, nl := range lns {
		hs := &http.Server{
			Handler:           drain.handler(progressHandler(srv.Handler(), sc.WriteStallTimeout.Duration)),
			ConnState:         drain.connState,
			ReadHeaderTimeout: sc.ReadHeaderTimeout.Duration,
			MaxHeaderBytes:    int(sc.MaxHeaderBytes),
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		hs.ConnContext = drain.connContext(nil)
		if nl.unix {
			hs.ConnContext = drain.connContext(func(ctx context.Context, c net.Conn) context.Context {
				return api.ConnContext(ctx, unwrapConn(c))
			})
		}
		// Shutdown begins at the end of the drain window: streams end
		// then, cleanly, and their connections close after them.
		hs.RegisterOnShutdown(srv.EndStreams)
		servers = append(servers, hs)
		log.Info("listening", "name", nl.name, "addr", nl.ln.Addr().String(), "inherited", nl.inherited, "tls", nl.tls != nil)
		serving.Add(1)
		go func() {
			defer serving.Done()
			ln := nl.ln
			if sc.WriteStallTimeout.Duration > 0 {
				ln = progressListener{nl.ln, sc.WriteStallTimeout.Duration}
			}
			var err error
			if nl.tls != nil {
				// Over TLS only; net/http adds HTTP/2 and answers plain
				// HTTP with 400.
				hs.TLSConfig = nl.tls
				err = hs.ServeTLS(ln, "", "")
			} else {
				err = hs.Serve(ln)
			}
			if !errors.Is(err, http.ErrServerClosed) && !stopping.Load() {
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
	start := time.Now()
	drain.stop()
	stopping.Store(true)
	closeAll(lns)
	waitGroup(sctx, &serving)
	// Keep-alive connections close after their next response; give idle
	// ones the drain window to send it.
	wctx, wcancel := context.WithTimeout(sctx, sc.DrainWindow.Duration)
	drain.waitClosed(wctx)
	wcancel()
	open, _ := drain.counts()
	// Answer every connection already accepted, then shut down.
	drain.waitPending(sctx)
	var wg sync.WaitGroup
	for _, hs := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Shutdown(sctx); err != nil {
				log.Warn("shutdown incomplete: closing remaining connections", "err", err)
				hs.Close()
			}
		}()
	}
	wg.Wait()
	log.Info("stopped", "drained_in", time.Since(start).Round(time.Millisecond), "open_after_window", open)
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
	tls       *tls.Config // nil: plain HTTP
}
