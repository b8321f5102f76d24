package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"octo/internal/bytesize"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// options are the flags of octo-agent serve.
type options struct {
	socket       string
	socketMode   os.FileMode
	workspace    string
	stateDir     string
	allowUsers   []string
	idleTimeout  time.Duration
	maxSessions  int
	outputCap    int64
	outputBudget int64
	user, home   string
}

func parseServe(args []string) (*options, error) {
	o := &options{socketMode: 0o600, idleTimeout: 10 * time.Minute}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.socket, "socket", "", "listen on this Unix socket path when not socket-activated (default $XDG_RUNTIME_DIR/octo-agent.sock)")
	fs.Func("socket-mode", "permissions of a socket the agent binds itself, octal (default 0600)", func(s string) error {
		m, err := strconv.ParseUint(s, 8, 32)
		if err != nil || m > 0o777 {
			return fmt.Errorf("%q is not an octal mode like 0600", s)
		}
		o.socketMode = os.FileMode(m)
		return nil
	})
	fs.StringVar(&o.workspace, "workspace", "", "directory sessions and file access are confined to (default: home)")
	fs.StringVar(&o.stateDir, "state-dir", "", "session records and output (default $STATE_DIRECTORY, $XDG_STATE_HOME/octo-agent or ~/.local/state/octo-agent)")
	fs.Func("allow-user", "also allow this user name or uid to connect (repeatable, comma separated)", func(s string) error {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				o.allowUsers = append(o.allowUsers, u)
			}
		}
		return nil
	})
	fs.DurationVar(&o.idleTimeout, "idle-timeout", o.idleTimeout, "exit after this long with no connection and no running session (0 = never)")
	fs.IntVar(&o.maxSessions, "max-sessions", 0, "most sessions running at once (0 = 64)")
	fs.Func("output-cap", "output bytes kept per session, e.g. 8M (default 8M; 0 = default)", func(s string) error {
		n, err := bytesize.Parse(s)
		o.outputCap = n
		return err
	})
	fs.Func("output-budget", "output bytes kept for all finished sessions together, oldest pruned first, e.g. 1G (default 256M; 0 = default)", func(s string) error {
		n, err := bytesize.Parse(s)
		o.outputBudget = n
		return err
	})
	fs.StringVar(&o.user, "user", "", "login name (default: from the passwd entry of the uid, else $USER)")
	fs.StringVar(&o.home, "home", "", "home directory (default: from the passwd entry of the uid, else $HOME)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			os.Exit(0)
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.idleTimeout < 0 || o.maxSessions < 0 {
		return nil, errors.New("--idle-timeout and --max-sessions must not be negative")
	}
	for _, p := range []*string{&o.workspace, &o.stateDir, &o.home, &o.socket} {
		if *p != "" && !filepath.IsAbs(*p) {
			return nil, fmt.Errorf("path %q must be absolute", *p)
		}
	}
	return o, nil
}
