package main

import (
	"bytes"
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"octo/internal/agent/agenttest"
	"octo/internal/backend"
	"octo/internal/config"
)

func testDoctor(t *testing.T) *doctor {
	t.Helper()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return &doctor{me: me}
}

// The agent binary's protocol decides: another protocol, or none said
// (an agent older than the protocol line), is a FAIL.
func TestDoctorVersions(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want level
		msg  string
	}{
		{"octo-agent " + version + " (protocol " + protocol + ")\n", levelOK, "protocol " + protocol},
		{"octo-agent 0.9 (protocol octo-agentrpc/1)\n", levelFail, "speaks octo-agentrpc/1, octo speaks " + protocol},
		{"octo-agent 0.8\n", levelFail, "does not say its protocol"},
		{"octo-agent 9.9 (protocol " + protocol + ")\n", levelWarn, "version 9.9"},
	} {
		d := testDoctor(t)
		d.command = func(context.Context, string, ...string) (string, error) { return tc.out, nil }
		d.checkVersions(context.Background())
		f := d.findings[len(d.findings)-1]
		if f.what != "octo-agent" || f.level != tc.want || !strings.Contains(f.msg, tc.msg) {
			t.Errorf("agent says %q: got %v %q, want %v containing %q", tc.out, f.level, f.msg, tc.want, tc.msg)
		}
		if tc.want != levelOK && !strings.Contains(f.fix, "install octo and octo-agent from one build") {
			t.Errorf("agent says %q: fix %q does not say to install both", tc.out, f.fix)
		}
	}
}

func TestDoctorOwnerAndMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, nil, 0o600)
	os.Chmod(p, 0o666)
	d := testDoctor(t)
	uid := os.Getuid()
	if _, ok := d.checkOwner("thing", p, uid, -1, 0o600, "chmod 0600 "+p); ok {
		t.Fatal("mode 0666 passed a check for 0600")
	}
	f := d.findings[0]
	if f.level != levelFail || !strings.Contains(f.msg, "mode 0666, want 0600") || f.fix != "chmod 0600 "+p {
		t.Errorf("finding %+v, want a FAIL naming the modes and the fix", f)
	}
	os.Chmod(p, 0o600)
	if _, ok := d.checkOwner("thing", p, uid+1, -1, 0o600, "chown"); ok || !strings.Contains(d.findings[1].msg, "owner uid") {
		t.Errorf("wrong owner passed: %+v", d.findings[1:])
	}
	if _, ok := d.checkOwner("thing", p, uid, -1, 0o600, "x"); !ok {
		t.Errorf("right owner and mode failed: %+v", d.findings[2:])
	}
}

// One line per finding; fixes follow "fix:"; the count of FAILs decides
// the exit status.
func TestDoctorReport(t *testing.T) {
	d := testDoctor(t)
	d.ok("a", "fine")
	d.warn("b", "do this", "meh")
	d.fail("c", "do that", "broken %d", 2)
	var buf bytes.Buffer
	if n := d.report(&buf); n != 1 {
		t.Errorf("report counted %d failures, want 1", n)
	}
	want := "ok    a: fine\nwarn  b: meh; fix: do this\nFAIL  c: broken 2; fix: do that\n"
	if buf.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// A config with an unknown key is a FAIL naming line, key and fix, and the
// rest is checked with the defaults.
func TestDoctorConfig(t *testing.T) {
	p := writeConfig(t, "[server]\nlisten = \"127.0.0.1:1\"\nlisn = 1\n")
	d := testDoctor(t)
	d.cfgPath, d.cfgSource = p, "--config"
	d.checkConfig(context.Background())
	f := d.findings[0]
	if f.level != levelFail || !strings.Contains(f.msg, p+":3: unknown key server.lisn (did you mean server.listen?)") || !strings.Contains(f.fix, "octo check-config "+p) {
		t.Errorf("finding %+v", f)
	}
	if d.router == nil || d.cfg.Server.Listen != "0.0.0.0:3000" {
		t.Errorf("after a bad config the checks go on with the defaults; router %v, listen %q", d.router, d.cfg.Server.Listen)
	}
	if _, err := capture(t, "doctor", "extra"); err == nil || !strings.Contains(err.Error(), "--user") {
		t.Errorf("doctor with an argument: %v, want a usage error pointing at --user", err)
	}
}

// The container backend's socket_dir must keep POSIX ACLs: tmpfs does,
// /proc does not.
func TestDoctorACL(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		want level
	}{{"/dev/shm", levelOK}, {"/proc", levelFail}} {
		if _, err := os.Stat(tc.dir); err != nil {
			t.Skipf("%s: %v", tc.dir, err)
		}
		d := testDoctor(t)
		d.checkACL(tc.dir)
		if f := d.findings[0]; f.level != tc.want {
			t.Errorf("checkACL(%s) = %v %q, want %v", tc.dir, f.level, f.msg, tc.want)
		}
	}
}

// As an ordinary user, enabled systemd --user units must listen; units not
// enabled are not this user's way to octo and are not checked.
func TestDoctorUserUnits(t *testing.T) {
	state := map[string]string{
		"is-enabled octo-user.socket": "enabled", "is-active octo-user.socket": "inactive",
		"is-enabled octo.socket": "enabled", "is-active octo.socket": "active",
		"is-enabled octo-api.socket": "disabled",
	}
	d := testDoctor(t)
	d.command = func(_ context.Context, name string, args ...string) (string, error) {
		if name != "systemctl" || args[0] != "--user" {
			t.Fatalf("ran %s %v, want systemctl --user", name, args)
		}
		return state[strings.Join(args[1:], " ")] + "\n", nil
	}
	d.checkUserUnits(context.Background())
	var buf bytes.Buffer
	d.report(&buf)
	want := "FAIL  octo-user.socket (--user): enabled but inactive; fix: systemctl --user start octo-user.socket\n" +
		"ok    octo.socket (--user): enabled and listening\n"
	if buf.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// /metrics without authentication on a non-loopback address is a warning.
func TestDoctorMetricsListen(t *testing.T) {
	for addr, want := range map[string]bool{"0.0.0.0:9100": true, "127.0.0.1:9100": false, "[::1]:9100": false} {
		d := testDoctor(t)
		d.cfgPath, d.cfgSource = writeConfig(t, "[server]\nmetrics_listen = \""+addr+"\"\n"), "--config"
		d.checkConfig(context.Background())
		warned := false
		for _, f := range d.findings {
			warned = warned || f.what == "metrics_listen" && f.level == levelWarn
		}
		if warned != want {
			t.Errorf("metrics_listen %s: warned %v, want %v (%+v)", addr, warned, want, d.findings)
		}
	}
}

// In container mode doctor asks the real engine: it answers, the image is
// there (a missing one is a FAIL saying to pull it), socket_dir keeps ACLs.
func TestDoctorContainer(t *testing.T) {
	engine, image := os.Getenv("OCTO_TEST_ENGINE_SOCKET"), os.Getenv("OCTO_TEST_IMAGE")
	if engine == "" || image == "" {
		skipOrFail(t, "needs a container engine: eval \"$(bash .ci/setup-engine.sh)\" sets OCTO_TEST_ENGINE_SOCKET and OCTO_TEST_IMAGE")
	}
	for _, tc := range []struct {
		image, what string
		want        level
		fix         string
	}{
		{image, "image", levelOK, ""},
		{"octo-doctor-no-such-image:0", "image", levelFail, "podman pull octo-doctor-no-such-image:0"},
	} {
		d := testDoctor(t)
		d.cfg = config.Default()
		d.cfg.Backend.Mode = config.ModeContainer
		d.cfg.Container.EngineSocket, d.cfg.Container.Image = engine, tc.image
		d.cfg.Container.SocketDir = "/dev/shm"
		d.checkContainer(context.Background())
		got := map[string]finding{}
		for _, f := range d.findings {
			got[f.what] = f
		}
		if f := got["engine"]; f.level != levelOK {
			t.Errorf("engine at %s: %+v", engine, f)
		}
		if f := got[tc.what]; f.level != tc.want || !strings.HasPrefix(f.fix, tc.fix) {
			t.Errorf("image %s: %+v, want %v with fix %q", tc.image, f, tc.want, tc.fix)
		}
	}
	d := testDoctor(t)
	d.cfg = config.Default()
	d.cfg.Backend.Mode = config.ModeContainer
	d.cfg.Container.EngineSocket = filepath.Join(t.TempDir(), "no-engine.sock")
	d.checkContainer(context.Background())
	if f := d.findings[0]; f.what != "engine" || f.level != levelFail || !strings.Contains(f.fix, "engine_socket") {
		t.Errorf("no engine: %+v, want a FAIL naming [container] engine_socket", f)
	}
}

// doctor checks an agent as the control plane would: who holds the
// socket (SO_PEERCRED), then Agent.Info as the right user.
func TestDoctorCallAgent(t *testing.T) {
	sock := agenttest.Start(t, "")
	me, err := currentUser()
	if err != nil {
		t.Fatal(err)
	}
	other := me
	other.UID++
	other.Name = me.Name + "-other"
	self := backend.PlacementUser // the test holds the socket, as a user's own agent does
	for _, tc := range []struct {
		name string
		u    backend.User
		pl   backend.Placement
		want level
		msg  string
	}{
		{"own agent", me, self, levelOK, "answers (user placement"},
		{"socket held by someone else", other, self, levelFail, "want uid " + strconv.Itoa(int(other.UID)) + ": octo refuses it"},
		{"system socket not held by root", me, backend.PlacementSystem, levelFail, "want uid 0"},
		{"agent of another user", backend.User{Name: "someone", UID: me.UID}, self, levelFail, "not someone"},
	} {
		if tc.pl == backend.PlacementSystem && me.UID == 0 {
			continue // as root, root holds it
		}
		d := testDoctor(t)
		d.callAgent(context.Background(), "agent", tc.u, tc.pl, sock)
		if f := d.findings[0]; f.level != tc.want || !strings.Contains(f.msg, tc.msg) {
			t.Errorf("%s: %v %q, want %v containing %q", tc.name, f.level, f.msg, tc.want, tc.msg)
		}
	}
	d := testDoctor(t)
	d.callAgent(context.Background(), "agent", backend.User{Name: "x", UID: 1}, self, filepath.Join(t.TempDir(), "none.sock"))
	if f := d.findings[0]; f.level != levelFail {
		t.Errorf("no socket: %+v, want a FAIL", f)
	}
}

func TestDoctorSlicesGenerator(t *testing.T) {
	for _, tc := range []struct {
		name        string
		etc, usrlib os.FileMode // the generator's mode in each; 0: none
		mask        bool        // /etc's is a link to /dev/null
		want        level
	}{
		{name: "missing", want: levelWarn},
		{name: "not executable", usrlib: 0o644, want: levelWarn},
		{name: "installed", usrlib: 0o755, want: levelOK},
		{name: "in /etc, over another", etc: 0o755, usrlib: 0o644, want: levelOK},
		{name: "masked in /etc", mask: true, usrlib: 0o755, want: levelWarn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			etc, usrlib := t.TempDir(), t.TempDir()
			old := generatorDirs
			generatorDirs = []string{etc, filepath.Join(etc, "missing"), usrlib}
			t.Cleanup(func() { generatorDirs = old })
			for dir, mode := range map[string]os.FileMode{etc: tc.etc, usrlib: tc.usrlib} {
				if mode != 0 {
					if err := os.WriteFile(filepath.Join(dir, "octo-agent-slices"), []byte("#!/bin/sh\n"), mode); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.mask {
				if err := os.Symlink("/dev/null", filepath.Join(etc, "octo-agent-slices")); err != nil {
					t.Fatal(err)
				}
			}
			d := testDoctor(t)
			d.checkSlicesGenerator()
			f := d.findings[len(d.findings)-1]
			if f.what != "agent slices" || f.level != tc.want {
				t.Errorf("got %v %q, want %v", f.level, f.msg, tc.want)
			}
			if tc.want == levelWarn && !strings.Contains(f.fix, "units/install.sh") {
				t.Errorf("fix %q does not name the installer", f.fix)
			}
		})
	}
}
