package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"octo/internal/agentrpc"
	"octo/internal/backend"
	"octo/internal/config"
)

// unitDirs are where the installer (units/install.sh) and packages put units.
var unitDirs = []string{"/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// systemUnits are the units units/install.sh installs.
var systemUnits = []string{"octo.service", "octo.socket", "octo-api.socket", "octo-agent@.service", "octo-agent@.socket"}

// protocol is the agent protocol this octo speaks, as "octo-agentrpc/N".
var protocol = strings.TrimSpace(agentrpc.Preamble)

func (d *doctor) checkConfig(ctx context.Context) {
	d.cfg, d.cfgErr = config.Load(d.cfgPath)
	from := d.cfgPath + " (from " + d.cfgSource + ")"
	switch {
	case errors.Is(d.cfgErr, config.ErrNoConfig):
		d.fail("config", "create it, or name the right file with --config or $OCTO_CONFIG", "%s does not exist", from)
	case d.cfgErr != nil:
		d.fail("config", "correct it in "+d.cfgPath+" (octo check-config "+d.cfgPath+")", "%v", d.cfgErr)
	default:
		if _, err := os.Stat(d.cfgPath); err != nil {
			d.ok("config", "%s does not exist; the defaults apply (backend.mode %s)", from, d.cfg.Backend.Mode)
		} else {
			d.ok("config", "%s parses (backend.mode %s)", from, d.cfg.Backend.Mode)
		}
	}
	if d.cfgErr != nil {
		d.cfg = config.Default() // check the rest as octo would with the defaults
	}
	if addr := d.cfg.Server.MetricsListen; addr != "" {
		if host, _, _ := net.SplitHostPort(addr); !isLoopback(host) {
			d.warn("metrics_listen", "set [server] metrics_listen to a loopback address such as \"127.0.0.1:9100\"", "%s serves /metrics without authentication beyond this machine", addr)
		}
	}
	d.router, _ = backend.NewRouter(backend.RouterConfig{Mode: config.ModeLocal, Local: d.cfg.Local, Container: d.cfg.Container.SocketDir})
}

func (d *doctor) checkUnits(ctx context.Context) {
	var missing, dirs []string
	for _, u := range systemUnits {
		if p := findUnit(u); p == "" {
			missing = append(missing, u)
		} else if dir := filepath.Dir(p); !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	if len(missing) > 0 {
		d.fail("units", "install them as root: units/install.sh", "%s not found in %s", strings.Join(missing, ", "), strings.Join(unitDirs, ", "))
		return
	}
	d.ok("units", "installed in %s", strings.Join(dirs, ", "))
	d.checkSlicesGenerator()
}

// generatorDirs are where systemd looks for the system generators an
// installer or a package puts there.
var generatorDirs = []string{"/etc/systemd/system-generators", "/usr/local/lib/systemd/system-generators", "/usr/lib/systemd/system-generators", "/lib/systemd/system-generators"}

// checkSlicesGenerator warns when the generator that spreads the agents over
// slices (units/README.md, Slices) is missing: everything works, but each
// agent start costs systemd more the more users there are.
func (d *doctor) checkSlicesGenerator() {
	const why = "every agent shares one slice, and systemd's work to start one grows with the number of users"
	for _, dir := range generatorDirs {
		// The first found is the one systemd runs: one in /etc masks (or
		// overrides) the others, as with units.
		p := filepath.Join(dir, "octo-agent-slices")
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			d.warn("agent slices", "install it: units/install.sh", "%v: %s", err, why)
		case !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0:
			d.warn("agent slices", "install it: units/install.sh (or remove the mask "+p+")", "%s is masked or not executable: %s", p, why)
		default:
			d.ok("agent slices", "generator installed in %s", dir)
		}
		return
	}
	d.warn("agent slices", "install it: units/install.sh", "the generator octo-agent-slices is not installed in %s: %s", strings.Join(generatorDirs, ", "), why)
}

func findUnit(name string) string {
	for _, dir := range unitDirs {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func (d *doctor) checkSystemd(ctx context.Context) {
	if !d.systemd {
		d.warn("systemd", "run octo under systemd (octo serve by hand or octo dev skip these checks)", "systemd is not running here: socket and service checks skipped")
		return
	}
	for _, s := range []string{"octo.socket", "octo-api.socket"} {
		enabled := d.systemctl(ctx, "is-enabled", s)
		active := d.systemctl(ctx, "is-active", s)
		switch {
		case active == "failed":
			d.fail(s, "systemctl reset-failed "+s+" && systemctl start "+s+" (why: journalctl -u "+s+")", "failed")
		case active != "active":
			d.fail(s, "systemctl enable --now "+s, "%s, %s: nothing listens for octo", enabled, active)
		case enabled != "enabled" && enabled != "static" && enabled != "indirect":
			d.warn(s, "systemctl enable "+s, "listening, but %s: it will not listen after a reboot", enabled)
		default:
			d.ok(s, "enabled and listening")
		}
	}
	switch st := d.systemctl(ctx, "is-active", "octo.service"); st {
	case "active":
		d.ok("octo.service", "running")
	case "inactive":
		d.ok("octo.service", "not running; the first connection to its sockets starts it")
	case "failed":
		d.fail("octo.service", "see journalctl -u octo.service -n 50, then systemctl reset-failed octo.service", "failed")
	default:
		d.warn("octo.service", "systemctl status octo.service", "%s", st)
	}
	if !d.privileged {
		d.checkUserUnits(ctx)
	}
}

// checkUserUnits checks the caller's systemd --user units (units/install.sh
// --user) that are enabled: each must listen.
func (d *doctor) checkUserUnits(ctx context.Context) {
	for _, s := range []string{"octo-user.socket", "octo.socket", "octo-api.socket"} {
		if d.systemctl(ctx, "--user", "is-enabled", s) != "enabled" {
			continue // not used: the system's units serve this user
		}
		switch st := d.systemctl(ctx, "--user", "is-active", s); st {
		case "active":
			d.ok(s+" (--user)", "enabled and listening")
		case "failed":
			d.fail(s+" (--user)", "systemctl --user reset-failed "+s+" && systemctl --user start "+s, "failed")
		default:
			d.fail(s+" (--user)", "systemctl --user start "+s, "enabled but %s", st)
		}
	}
}

// fileInfo is a file's owner, group and mode, from lstat.
type fileInfo struct {
	uid, gid int
	mode     fs.FileMode
}

func statFile(path string) (fileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileInfo{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileInfo{uid: int(st.Uid), gid: int(st.Gid), mode: fi.Mode()}, nil
}

// checkOwner checks path's owner, group (-1: any) and permission bits.
func (d *doctor) checkOwner(what, path string, uid, gid int, perm fs.FileMode, fix string) (fileInfo, bool) {
	fi, err := statFile(path)
	if errors.Is(err, fs.ErrPermission) {
		d.warn(what, "run octo doctor as root", "cannot check %s as %s", path, d.me.Username)
		return fi, false
	}
	if err != nil {
		d.fail(what, fix, "%v", err)
		return fi, false
	}
	var bad []string
	if fi.uid != uid {
		bad = append(bad, fmt.Sprintf("owner uid %d, want %d", fi.uid, uid))
	}
	if gid >= 0 && fi.gid != gid {
		bad = append(bad, fmt.Sprintf("group gid %d, want %d", fi.gid, gid))
	}
	if fi.mode.Perm() != perm {
		bad = append(bad, fmt.Sprintf("mode %04o, want %04o", fi.mode.Perm(), perm))
	}
	if len(bad) > 0 {
		d.fail(what, fix, "%s: %s", path, strings.Join(bad, ", "))
		return fi, false
	}
	return fi, true
}

func (d *doctor) checkRuntimeDir(ctx context.Context) {
	dir := d.cfg.Local.SocketDir
	if d.cfg.Backend.Mode == config.ModeContainer || !strings.HasPrefix(dir, "/run/octo") {
		return
	}
	if _, ok := d.checkOwner("runtime dir", dir, 0, 0, 0o755, "systemd-tmpfiles --create /etc/tmpfiles.d/octo.conf"); ok {
		d.ok("runtime dir", "%s: root, 0755", dir)
	}
	if p := d.cfg.Server.APISocket; p != "" {
		fi, err := statFile(p)
		switch {
		case err != nil:
			d.fail("api socket", "systemctl enable --now octo-api.socket", "%v", err)
		case fi.mode.Type() != fs.ModeSocket:
			d.fail("api socket", "remove "+p+", then systemctl restart octo-api.socket", "%s is not a socket", p)
		case fi.mode.Perm() != 0o666:
			d.warn("api socket", "systemctl restart octo-api.socket", "%s: mode %04o, want 0666 (every user may call; the kernel says who)", p, fi.mode.Perm())
		default:
			d.ok("api socket", "%s: 0666", p)
		}
	}
}

func (d *doctor) checkState(ctx context.Context) {
	dir := d.cfg.Server.StateDir
	owner, who := uidOf("octo"), "octo"
	if owner < 0 || !strings.HasPrefix(dir, "/var/") {
		owner, who = os.Getuid(), d.me.Username
	}
	fi, err := statFile(dir)
	if errors.Is(err, fs.ErrNotExist) {
		d.ok("state dir", "%s does not exist yet: octo.service creates it (StateDirectory=)", dir)
		return
	}
	if err == nil && fi.uid == 0 && owner != 0 {
		d.warn("state dir", "systemctl start octo.service (it takes it over), or chown -R octo: "+dir, "%s is root's: octo has not run since tokens were created", dir)
		return
	}
	if _, ok := d.checkOwner("state dir", dir, owner, -1, 0o700, "chown "+who+" "+dir+" && chmod 0700 "+dir); !ok {
		return
	}
	d.ok("state dir", "%s: %s, 0700", dir, who)
	tok := filepath.Join(dir, "tokens.json")
	if _, err := os.Lstat(tok); errors.Is(err, fs.ErrNotExist) {
		d.ok("tokens", "no tokens yet (octo token create USER)")
		return
	}
	if _, ok := d.checkOwner("tokens", tok, owner, -1, 0o600, "chown "+who+" "+tok+" && chmod 0600 "+tok); ok {
		d.ok("tokens", "%s: %s, 0600", tok, who)
	}
}

// agentBinary is the octo-agent systemd runs (ExecStart= of
// octo-agent@.service), else the one beside this octo.
func agentBinary() string {
	if p := findUnit("octo-agent@.service"); p != "" {
		if f, err := os.Open(p); err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "ExecStart="); ok {
					if fields := strings.Fields(strings.TrimLeft(v, "-@:+!")); len(fields) > 0 {
						return fields[0]
					}
				}
			}
		}
	}
	if self, err := os.Executable(); err == nil {
		return filepath.Join(filepath.Dir(self), "octo-agent")
	}
	return "octo-agent"
}

func (d *doctor) checkVersions(ctx context.Context) {
	d.ok("octo", "version %s, protocol %s", version, protocol)
	bin := agentBinary()
	out, err := d.command(ctx, bin, "version")
	fix := "install octo and octo-agent from one build (units/install.sh installs both), then systemctl restart octo.service and the agents"
	if err != nil {
		d.fail("octo-agent", fix, "%s version: %v", bin, err)
		return
	}
	ver, proto := parseAgentVersion(out)
	switch {
	case proto == "":
		d.fail("octo-agent", fix, "%s (version %s) does not say its protocol: older than this octo, which speaks %s", bin, ver, protocol)
	case proto != protocol:
		d.fail("octo-agent", fix, "%s speaks %s, octo speaks %s", bin, proto, protocol)
	case ver != version:
		d.warn("octo-agent", fix, "%s is version %s, octo %s (same protocol %s)", bin, ver, version, proto)
	default:
		d.ok("octo-agent", "%s: version %s, protocol %s", bin, ver, proto)
	}
}

// parseAgentVersion reads `octo-agent version`: "octo-agent VERSION
// (protocol octo-agentrpc/N)".
func parseAgentVersion(out string) (ver, proto string) {
	f := strings.Fields(out)
	if len(f) >= 2 && f[0] == "octo-agent" {
		ver = f[1]
	}
	for i, w := range f {
		if strings.TrimLeft(w, "(") == "protocol" && i+1 < len(f) {
			proto = strings.TrimRight(f[i+1], ")")
		}
	}
	return ver, proto
}

// apiClient is an HTTP client for the control plane's Unix socket.
func apiClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		},
	}}
}

func (d *doctor) checkControlPlane(ctx context.Context) {
	sock := d.cfg.Server.APISocket
	if sock == "" {
		return
	}
	c := apiClient(sock)
	defer c.CloseIdleConnections()
	get := func(path string) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://octo"+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, b, err
	}
	code, _, err := get("/healthz")
	if err != nil || code != http.StatusOK {
		d.fail("control plane", "systemctl status octo.service octo-api.socket; journalctl -u octo.service -n 50", "GET /healthz on %s: %d %v", sock, code, err)
		return
	}
	d.ok("control plane", "answers on %s", sock)
	if d.privileged {
		return
	}
	// As an ordinary user: what octo says about me.
	code, body, err := get("/api/v1/status")
	var st struct {
		Placement string
		Error     struct{ Code, Message string }
		Agent     struct{ Version string }
	}
	json.Unmarshal(body, &st)
	switch {
	case err != nil:
		d.fail("api as "+d.me.Username, "journalctl -u octo.service -n 50", "GET /api/v1/status: %v", err)
	case code != http.StatusOK:
		d.fail("api as "+d.me.Username, "ask an administrator: "+st.Error.Message, "GET /api/v1/status: %d %s", code, st.Error.Code)
	default:
		d.ok("api as "+d.me.Username, "served by a %s agent, version %s", st.Placement, st.Agent.Version)
	}
}
