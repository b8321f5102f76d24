package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"

	"octo/internal/backend"
	"octo/internal/config"
)

// octo doctor checks an installation top to bottom and prints one line per
// check: ok, warn or FAIL, each warning and failure with what fixes it. It
// exits 1 on any FAIL. As root or octo it checks everything; as another
// user what that user can (their own agent, the API as them).

// level is a finding's verdict.
type level int

const (
	levelOK level = iota
	levelWarn
	levelFail
)

func (l level) String() string { return [...]string{"ok", "warn", "FAIL"}[l] }

// finding is one line of the report.
type finding struct {
	level level
	what  string // the thing checked: "config", "octo.socket", "agent alice"
	msg   string
	fix   string // the command or config change that fixes it (warn, FAIL)
}

// doctor holds what the checks share.
type doctor struct {
	cfgPath    string
	cfgSource  string // "--config", "$OCTO_CONFIG" or "default"
	cfg        config.Config
	cfgErr     error
	users      []string // --user; empty: every user with an agent socket
	me         *user.User
	privileged bool // root or octo: everything is readable
	router     *backend.Router
	systemd    bool // systemd is the init system (/run/systemd/system exists)
	// command runs a program and returns its output; tests replace it.
	command  func(ctx context.Context, name string, args ...string) (string, error)
	findings []finding
}

// doctorChecks is the table of checks, run in order.
var doctorChecks = []struct {
	name string
	run  func(*doctor, context.Context)
}{
	{"config", (*doctor).checkConfig},
	{"units", (*doctor).checkUnits},
	{"systemd", (*doctor).checkSystemd},
	{"runtime dir", (*doctor).checkRuntimeDir},
	{"state", (*doctor).checkState},
	{"tls", (*doctor).checkTLS},
	{"versions", (*doctor).checkVersions},
	{"control plane", (*doctor).checkControlPlane},
	{"users", (*doctor).checkUsers},
	{"container", (*doctor).checkContainer},
}

func doctorCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	var users []string
	fs.Func("user", "check this user (repeatable; default: every user with an agent socket)", func(s string) error {
		users = append(users, s)
		return nil
	})
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: doctor takes no arguments (name users with --user NAME)", errUsage)
	}
	d, err := newDoctor(*path, users)
	if err != nil {
		return err
	}
	d.run(ctx)
	if n := d.report(os.Stdout); n > 0 {
		return fmt.Errorf("doctor: %d check(s) failed", n)
	}
	return nil
}

func newDoctor(flagPath string, users []string) (*doctor, error) {
	me, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("who am I: %w", err)
	}
	d := &doctor{cfgPath: configPath(flagPath), users: users, me: me, command: runCommand}
	switch {
	case flagPath != "":
		d.cfgSource = "--config"
	case os.Getenv("OCTO_CONFIG") != "":
		d.cfgSource = "$OCTO_CONFIG"
	default:
		d.cfgSource = "default"
	}
	d.privileged = me.Uid == "0" || me.Username == "octo"
	fi, err := os.Stat("/run/systemd/system")
	d.systemd = err == nil && fi.IsDir()
	return d, nil
}

func (d *doctor) run(ctx context.Context) {
	for _, c := range doctorChecks {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c.run(d, cctx)
		cancel()
	}
}

func (d *doctor) ok(what, format string, args ...any) {
	d.findings = append(d.findings, finding{levelOK, what, fmt.Sprintf(format, args...), ""})
}

func (d *doctor) warn(what, fix, format string, args ...any) {
	d.findings = append(d.findings, finding{levelWarn, what, fmt.Sprintf(format, args...), fix})
}

func (d *doctor) fail(what, fix, format string, args ...any) {
	d.findings = append(d.findings, finding{levelFail, what, fmt.Sprintf(format, args...), fix})
}

// report prints the findings and returns the number of failures.
func (d *doctor) report(w io.Writer) int {
	fails := 0
	for _, f := range d.findings {
		line := fmt.Sprintf("%-4s  %s: %s", f.level, f.what, f.msg)
		if f.fix != "" {
			line += "; fix: " + f.fix
		}
		fmt.Fprintln(w, line)
		if f.level == levelFail {
			fails++
		}
	}
	return fails
}

// systemctl runs systemctl and returns its trimmed output, which says the
// state even when it exits non-zero.
func (d *doctor) systemctl(ctx context.Context, args ...string) string {
	out, _ := d.command(ctx, "systemctl", args...)
	return strings.TrimSpace(out)
}

func runCommand(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(out) == 0 {
		out = ee.Stderr
	}
	return string(out), err
}

// uidOf returns the uid of the named account, or -1.
func uidOf(name string) int {
	u, err := user.Lookup(name)
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(u.Uid)
	return n
}

// gidOf returns the gid of the named group, or -1.
func gidOf(name string) int {
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(g.Gid)
	return n
}
