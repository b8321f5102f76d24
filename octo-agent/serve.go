package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"octo/internal/agent"
	"octo/internal/agentflags"
)

// serve runs the agent until ctx ends or it has been idle long enough.
func serve(ctx context.Context, o *agentflags.Options, log *slog.Logger) error {
	cfg, err := o.Config(log)
	if err != nil {
		return err
	}
	cfg.Reloader = &reloader{exe: executable(), args: os.Args, log: log}
	srv, ln, err := start(o, cfg, log)
	if err != nil {
		return err
	}
	daemon.SdNotify(false, daemon.SdNotifyReady) // Run logs "agent serving" as it starts
	stopWatchdog := watchdog(log)
	err = srv.Run(ctx, ln)
	stopWatchdog()
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	if err == nil {
		log.Debug("octo-agent stopped")
	}
	return err
}

// failAdopt, set by a test's build (-ldflags "-X main.failAdopt=why"),
// makes this binary fail to adopt the sessions handed to it.
var failAdopt string

// start returns the server and its listener: taken over from the image
// before this one when it handed over on reload, else new.
func start(o *agentflags.Options, cfg agent.Config, log *slog.Logger) (*agent.Server, net.Listener, error) {
	st, handed, err := takeHandover()
	if err != nil {
		// The descriptors cannot be known: nothing to go back to.
		return nil, nil, fmt.Errorf("take over from the previous agent: %w", err)
	}
	if handed {
		r := cfg.Reloader.(*reloader)
		if st.Exe != "" {
			r.exe = st.Exe
		}
		r.unlink = st.Unlink
		h, files := st.files()
		var srv *agent.Server
		var ln net.Listener
		err := errors.New(failAdopt)
		if failAdopt == "" {
			srv, ln, err = agent.Adopt(cfg, h, files)
		}
		if err != nil {
			log.Error("cannot take over; going back to the previous binary", "token", st.Token, "err", err)
			return nil, nil, handBack(st, os.Args, err)
		}
		st.done()
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(st.Unlink)
		}
		if st.Failed != "" {
			log.Error("reload failed; the previous binary serves again", "token", st.Token, "reason", st.Failed)
		} else {
			log.Info("agent reloaded", "token", st.Token, "version", agent.Version, "sessions", len(st.Sessions.Sessions),
				"took", time.Since(st.Began).Round(time.Microsecond).String())
		}
		return srv, ln, nil
	}
	srv, err := agent.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	ln, activated, err := listen(o)
	if err != nil {
		return nil, nil, err
	}
	if activated {
		log.Debug("listening on the socket systemd passed")
	}
	cfg.Reloader.(*reloader).unlink = !activated
	return srv, ln, nil
}

// watchdog pings systemd at half the watchdog interval when WATCHDOG_USEC
// asks for it. The returned func stops it.
func watchdog(log *slog.Logger) (stop func()) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("watchdog not enabled", "err", err)
	}
	if err != nil || interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// executable is the path a reload runs: the path the agent was started by
// (systemd's ExecStart), which a new version is installed at.
func executable() string {
	if filepath.IsAbs(os.Args[0]) {
		return os.Args[0]
	}
	if p, err := os.Executable(); err == nil {
		return p
	}
	return os.Args[0]
}
