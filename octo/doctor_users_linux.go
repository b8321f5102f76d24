package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/agentslice"
	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/peercred"
)

// usersToCheck is --user, else every user with an agent socket (as root or
// octo), else the caller.
func (d *doctor) usersToCheck() []string {
	if len(d.users) > 0 {
		return d.users
	}
	if !d.privileged {
		return []string{d.me.Username}
	}
	matches, _ := filepath.Glob(filepath.Join(d.cfg.Local.SocketDir, "agent-*.sock"))
	var names []string
	for _, m := range matches {
		names = append(names, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "agent-"), ".sock"))
	}
	slices.Sort(names)
	if len(names) == 0 {
		d.warn("users", "systemctl enable --now octo-agent@USER.socket for each user to serve", "no agent sockets in %s", d.cfg.Local.SocketDir)
	}
	return names
}

func (d *doctor) checkUsers(ctx context.Context) {
	if d.cfg.Backend.Mode == config.ModeContainer {
		return // agents live in containers, started on demand
	}
	policy := backend.NewUsers(d.cfg.Users)
	for _, name := range d.usersToCheck() {
		what := "user " + name
		if !d.privileged {
			// The policy is the control plane's, applied as octo; the
			// API's answer above is the verdict for the caller.
			u, err := currentUser()
			if err != nil || u.Name != name {
				d.warn(what, "run octo doctor as root", "only root or octo can check other users")
				continue
			}
			d.checkAgent(ctx, u)
			continue
		}
		u, err := policy.Lookup(name)
		if err != nil {
			d.fail(what, fmt.Sprintf("add %q to [users] allow in %s", name, d.cfgPath), "%v", err)
			continue
		}
		d.ok(what, "served by [users] (uid %d)", u.UID)
		d.checkAgent(ctx, u)
	}
}

// checkAgent checks u's agent socket and asks the agent who it is.
func (d *doctor) checkAgent(ctx context.Context, u backend.User) {
	what := "agent " + u.Name
	restart := "systemctl restart octo-agent@" + u.Name + ".socket"
	placement := backend.PlacementSystem
	sock := d.router.SocketPath(placement, u)
	if _, err := os.Lstat(sock); errors.Is(err, fs.ErrNotExist) {
		us := d.router.SocketPath(backend.PlacementUser, u)
		if _, uerr := os.Lstat(us); us == "" || uerr != nil {
			d.fail(what, "systemctl enable --now octo-agent@"+u.Name+".socket", "no agent socket %s", sock)
			return
		}
		placement, sock = backend.PlacementUser, us
	}
	// The modes the units set: octo-agent@.socket 0660 USER:octo,
	// octo-user.socket 0600.
	wantGID, wantMode := gidOf("octo"), fs.FileMode(0o660)
	fix := restart + " (and look for a drop-in changing it: systemctl cat octo-agent@" + u.Name + ".socket)"
	if placement == backend.PlacementUser {
		restart = "as " + u.Name + ": systemctl --user restart octo-user.socket"
		wantGID, wantMode, fix = -1, 0o600, restart
	}
	fi, ok := d.checkOwner(what, sock, int(u.UID), wantGID, wantMode, fix)
	if !ok {
		if fi.mode.Perm()&0o007 != 0 || fi.mode == 0 {
			return // open to anyone or unreadable: no need to go on
		}
	} else if fi.mode.Type() != fs.ModeSocket {
		d.fail(what, restart, "%s is not a socket", sock)
		return
	}
	if placement == backend.PlacementSystem && d.systemd {
		unit := "octo-agent@" + u.Name + ".socket"
		if en := d.systemctl(ctx, "is-enabled", unit); en != "enabled" {
			d.warn(what, "systemctl enable "+unit, "%s listens but is %s: it will not after a reboot", unit, en)
		} else if svc := "octo-agent@" + u.Name + ".service"; d.systemctl(ctx, "show", "-P", "Slice", svc) == agentslice.Parent {
			// Enabled, yet not placed: the generator did not run since
			// (systemctl --no-reload enable), or could not.
			d.warn(what, "systemctl daemon-reload (if it stays, see the \"agent slices\" line and journalctl -b | grep octo-agent-slices)",
				"%s is in %s, not in a slice of its own: its starts cost systemd more the more users there are", svc, agentslice.Parent)
		}
	}
	d.callAgent(ctx, what, u, placement, sock)
	d.checkAgentState(u)
}

// callAgent connects as the control plane does: who listens must be root
// (systemd) for a system agent, the user for their own; then Agent.Info.
func (d *doctor) callAgent(ctx context.Context, what string, u backend.User, pl backend.Placement, sock string) {
	var dl net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, err := dl.DialContext(dctx, "unix", sock)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			d.fail(what, "systemctl restart octo-agent@"+u.Name+".socket", "nothing listens on %s", sock)
		case errors.Is(err, fs.ErrPermission):
			d.warn(what, "run octo doctor as root", "%s may not connect to %s", d.me.Username, sock)
		default:
			d.fail(what, "systemctl status octo-agent@"+u.Name+".socket", "connect %s: %v", sock, err)
		}
		return
	}
	cred, err := peercred.Get(nc)
	want := uint32(0)
	if pl == backend.PlacementUser {
		want = u.UID
	}
	if err != nil || cred.UID != want {
		nc.Close()
		d.fail(what, "find who listens: ss -xlp src "+sock+"; remove it and systemctl restart octo-agent@"+u.Name+".socket",
			"%s is held by %v, want uid %d: octo refuses it", sock, cred, want)
		return
	}
	c := agentrpc.NewClient(nc)
	defer c.Close()
	info, err := c.Info(dctx)
	switch {
	case err != nil:
		d.fail(what, "journalctl -u octo-agent@"+u.Name+".service -n 50; an agent of another protocol than "+protocol+
			" drops the connection: install octo-agent from this octo's build and systemctl restart octo-agent@"+u.Name+".service", "Agent.Info: %v", err)
	case info.UID != u.UID || info.User != u.Name:
		d.fail(what, "systemctl restart octo-agent@"+u.Name+".service", "the agent runs as %s (uid %d), not %s", info.User, info.UID, u.Name)
	case info.Version != version:
		d.warn(what, "restart it when idle: systemctl restart octo-agent@"+u.Name+".service", "answers, version %s (octo is %s): started before an upgrade?", info.Version, version)
	default:
		d.ok(what, "%s answers (%s placement, version %s, pid %d, workspace %s, %d running)", sock, pl, info.Version, info.PID, info.Workspace, info.RunningSessions)
	}
}

// checkAgentState checks the system agent's state dir (StateDirectory=
// octo-agent/USER), once it exists.
func (d *doctor) checkAgentState(u backend.User) {
	dir := filepath.Join("/var/lib/octo-agent", u.Name)
	if _, err := os.Lstat(dir); err != nil {
		return // not created yet (first start) or not ours to see
	}
	if _, ok := d.checkOwner("agent state "+u.Name, dir, int(u.UID), -1, 0o700, "chown -R "+u.Name+" "+dir+" && chmod 0700 "+dir); ok {
		d.ok("agent state "+u.Name, "%s: uid %s, 0700", dir, strconv.Itoa(int(u.UID)))
	}
}
