package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"octo/internal/backend"
	"octo/internal/cluster"
	"octo/internal/config"
	"octo/internal/gateway"
	"octo/internal/slurm"
)

// slurmRouter builds backend.mode "slurm": the gateway (its CA made on
// first start), listening until ctx ends; a pool of the users' local
// agents, through which sbatch and scancel run as each user; and the
// placer. Running agent jobs of a previous octo are adopted.
func slurmRouter(ctx context.Context, cfg config.Config, log *slog.Logger) (*backend.Router, error) {
	sc := cfg.Slurm
	certPath, keyPath := cfg.CAPaths()
	ca, err := gateway.LoadOrCreateCA(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	users := backend.NewUsers(cfg.Users)
	host, _, _ := net.SplitHostPort(sc.Advertise)
	// An agent's certificate outlives its job: it reconnects with it after
	// an octo restart or a network failure, however late in the job.
	certTTL := 7 * 24 * time.Hour
	if sc.TimeLimit.Duration > 0 {
		certTTL = sc.TimeLimit.Duration + time.Hour
	}
	gw, err := gateway.New(gateway.Config{
		CA: ca, Hosts: []string{host}, TokenTTL: sc.LaunchTimeout.Duration, CertTTL: certTTL, Log: log.With("component", "gateway"),
		Verifier: gateway.SlurmVerifier{R: slurm.Exec{Conf: sc.Conf}},
		LookupUID: func(name string) (uint32, error) {
			u, err := users.Lookup(name)
			return u.UID, err
		},
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", sc.Listen)
	if err != nil {
		return nil, fmt.Errorf("key slurm.listen: %w", err)
	}
	go func() {
		if err := gw.Run(ctx, ln); err != nil {
			log.Error("gateway stopped", "err", err)
		}
	}()
	localRouter, err := backend.NewRouter(backend.RouterConfig{Mode: config.ModeLocal, Local: cfg.Local})
	if err != nil {
		return nil, err
	}
	local := backend.NewPool(localRouter, cfg.Local.ConnectTimeout.Duration, log.With("component", "submit"))
	context.AfterFunc(ctx, local.Close)
	agent := sc.AgentCommand + " --idle-timeout " + sc.IdleTimeout.Duration.String()
	placer, err := cluster.New(cluster.Config{
		Gateway: gw, Advertise: sc.Advertise, Queue: slurm.Exec{Conf: sc.Conf},
		AsUser: func(u backend.User, env map[string]string) slurm.Runner {
			return cluster.AgentRunner{Pool: local, User: u, Env: env}
		},
		Spec: slurm.Spec{Agent: agent, Partition: sc.Partition, Account: sc.Account,
			TimeLimit: sc.TimeLimit.Duration, Extra: sc.SbatchArgs},
		SlurmConf: sc.Conf, LaunchTimeout: sc.LaunchTimeout.Duration, RequestWait: sc.RequestWait.Duration,
		Log: log.With("component", "slurm"),
	})
	if err != nil {
		return nil, err
	}
	go placer.Watch(ctx, sc.CheckInterval.Duration)
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := placer.Adopt(actx, func(name string) (uint32, error) {
		u, err := users.Lookup(name)
		return u.UID, err
	}); err != nil {
		log.Warn("no agent jobs adopted: squeue failed", "err", err)
	}
	log.Info("gateway listening", "addr", ln.Addr().String(), "advertise", sc.Advertise,
		"ca_sha256", strings.ToUpper(gw.Fingerprint()[:16])+"...")
	return backend.NewRouter(backend.RouterConfig{Mode: config.ModeSlurm, Local: cfg.Local, Slurm: placer})
}
