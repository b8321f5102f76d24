// Package agentflags turns an agent's command line (octo-agent serve's
// flags, which octo-agent-dial takes too) into the agent's Config.
package agentflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"octo/internal/agent"
	"octo/internal/bytesize"
	"octo/internal/passwd"
)

// Options are the flags of octo-agent serve.
type Options struct {
	Socket       string
	SocketMode   os.FileMode
	Workspace    string
	StateDir     string
	AllowUsers   []string
	IdleTimeout  time.Duration
	MaxSessions  int
	OutputCap    int64
	OutputBudget int64
	User, Home   string
}

// Parse parses args. With -h or --help it prints the flags to stdout and
// exits.
func Parse(args []string) (*Options, error) {
	o := &Options{SocketMode: 0o600, IdleTimeout: 10 * time.Minute}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.Socket, "socket", "", "listen on this Unix socket path when not socket-activated (default $XDG_RUNTIME_DIR/octo-agent.sock)")
	fs.Func("socket-mode", "permissions of a socket the agent binds itself, octal (default 0600)", func(s string) error {
		m, err := strconv.ParseUint(s, 8, 32)
		if err != nil || m > 0o777 {
			return fmt.Errorf("%q is not an octal mode like 0600", s)
		}
		o.SocketMode = os.FileMode(m)
		return nil
	})
	fs.StringVar(&o.Workspace, "workspace", "", "directory sessions and file access are confined to (default: home)")
	fs.StringVar(&o.StateDir, "state-dir", "", "session records and output (default $STATE_DIRECTORY, $XDG_STATE_HOME/octo-agent or ~/.local/state/octo-agent)")
	fs.Func("allow-user", "also allow this user name or uid to connect (repeatable, comma separated)", func(s string) error {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				o.AllowUsers = append(o.AllowUsers, u)
			}
		}
		return nil
	})
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", o.IdleTimeout, "exit after this long with no connection and no running session (0 = never)")
	fs.IntVar(&o.MaxSessions, "max-sessions", 0, "most sessions running at once (0 = 64)")
	fs.Func("output-cap", "output bytes kept per session, e.g. 8M (default 8M; 0 = default)", func(s string) error {
		n, err := bytesize.Parse(s)
		o.OutputCap = n
		return err
	})
	fs.Func("output-budget", "output bytes kept for all finished sessions together, oldest pruned first, e.g. 1G (default 256M; 0 = default)", func(s string) error {
		n, err := bytesize.Parse(s)
		o.OutputBudget = n
		return err
	})
	fs.StringVar(&o.User, "user", "", "login name (default: from the passwd entry of the uid, else $USER)")
	fs.StringVar(&o.Home, "home", "", "home directory (default: from the passwd entry of the uid, else $HOME)")
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
	if o.IdleTimeout < 0 || o.MaxSessions < 0 {
		return nil, errors.New("--idle-timeout and --max-sessions must not be negative")
	}
	for _, p := range []*string{&o.Workspace, &o.StateDir, &o.Home, &o.Socket} {
		if *p != "" && !filepath.IsAbs(*p) {
			return nil, fmt.Errorf("path %q must be absolute", *p)
		}
	}
	return o, nil
}

// Config fills the agent's config from the flags, the passwd entry and the
// environment.
func (o *Options) Config(log *slog.Logger) (agent.Config, error) {
	// One read of the user database; with no entry for the uid, the
	// environment (as in a minimal container). The flags win.
	pw, err := passwd.Current()
	if err != nil {
		pw = passwd.Entry{Name: os.Getenv("USER"), Home: os.Getenv("HOME"), Shell: os.Getenv("SHELL")}
	}
	if o.User != "" {
		pw.Name = o.User
	}
	if o.Home != "" {
		pw.Home = o.Home
	}
	if pw.Name == "" || pw.Home == "" {
		return agent.Config{}, fmt.Errorf("uid %d has no passwd entry: pass --user and --home or set $USER and $HOME", os.Getuid())
	}
	if !filepath.IsAbs(pw.Home) {
		return agent.Config{}, fmt.Errorf("home %q must be an absolute path", pw.Home)
	}
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = DefaultStateDir(pw.Home)
	}
	var allow []uint32
	for _, u := range o.AllowUsers {
		n, err := agent.LookupUID(u)
		if err != nil {
			return agent.Config{}, fmt.Errorf("--allow-user: %w", err)
		}
		allow = append(allow, n)
	}
	return agent.Config{
		User: pw.Name, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Home: pw.Home,
		Workspace: o.Workspace, StateDir: stateDir, AllowUIDs: allow, IdleTimeout: o.IdleTimeout,
		MaxSessions: o.MaxSessions, OutputCap: o.OutputCap, OutputBudget: o.OutputBudget,
		Logger: log, Shell: pw.Shell,
	}, nil
}

// DefaultStateDir is $STATE_DIRECTORY (set by systemd's StateDirectory=),
// else $XDG_STATE_HOME/octo-agent, else ~/.local/state/octo-agent.
func DefaultStateDir(home string) string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return filepath.SplitList(d)[0]
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "octo-agent")
	}
	return filepath.Join(home, ".local", "state", "octo-agent")
}
