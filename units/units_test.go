package units

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// need skips the test when tool is missing, or fails it when CI=true.
func need(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found and CI=true: %v (run .ci/setup-e2e.sh)", tool, err)
		}
		t.Skipf("skipping: needs %s (apt-get install systemd)", tool)
	}
}

// stubBinaries writes executable stand-ins for the binaries: these
// tests check units and the installer, not the programs.
func stubBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range []string{"octo", "octo-agent", "octo-agent-dial"} {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// install runs install.sh with env added to a minimal environment.
func install(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"install.sh"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stagedRoot installs into a fresh DESTDIR with stub binaries, plus a copy of
// the host's own system units so that systemd-analyze --root can resolve
// sysinit.target and the rest.
func stagedRoot(t *testing.T, prefix string) string {
	t.Helper()
	root := t.TempDir()
	env := []string{"DESTDIR=" + root, "OCTO_BINDIR=" + stubBinaries(t)}
	if prefix != "" {
		env = append(env, "PREFIX="+prefix)
	}
	if out, err := install(t, env); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(root, "lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", "/lib/systemd/system", filepath.Join(root, "lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy host units: %v\n%s", err, out)
	}
	return root
}

func TestInstallStagesEverything(t *testing.T) {
	root := stagedRoot(t, "/opt/octo")
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		// Execute-only for all but root: non-dumpable from execve on.
		{"opt/octo/bin/octo", 0o711},
		{"opt/octo/bin/octo-agent", 0o711},
		{"opt/octo/bin/octo-agent-dial", 0o711},
		{"etc/systemd/system/octo.socket", 0o644},
		{"etc/systemd/system/octo-api.socket", 0o644},
		{"etc/systemd/system/octo.service", 0o644},
		{"etc/systemd/system/octo-agent@.socket", 0o644},
		{"etc/systemd/system/octo-agent@.service", 0o644},
		{"etc/systemd/system-generators/octo-agent-slices", 0o755},
		{"etc/systemd/user/octo-user.socket", 0o644},
		{"etc/systemd/user/octo-user.service", 0o644},
		{"etc/systemd/user/octo.socket", 0o644},
		{"etc/systemd/user/octo-api.socket", 0o644},
		{"etc/systemd/user/octo.service", 0o644},
		{"etc/tmpfiles.d/octo.conf", 0o644},
		{"etc/sysusers.d/octo.conf", 0o644},
	} {
		fi, err := os.Stat(filepath.Join(root, tc.path))
		if err != nil {
			t.Errorf("installed %s: %v", tc.path, err)
			continue
		}
		if got := fi.Mode().Perm(); got != tc.mode {
			t.Errorf("%s mode = %o, want %o", tc.path, got, tc.mode)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Getuid() == 0 && st.Uid != 0 {
			t.Errorf("%s is owned by uid %d, want root", tc.path, st.Uid)
		}
	}
	// PREFIX moves the binaries and every ExecStart with them.
	for _, tc := range []struct{ unit, want string }{
		{"etc/systemd/system/octo.service", "ExecStart=/opt/octo/bin/octo serve\n"},
		{"etc/systemd/system/octo-agent@.service", "ExecStart=/opt/octo/bin/octo-agent serve --allow-user octo\n"},
		{"etc/systemd/user/octo-user.service", "ExecStart=/opt/octo/bin/octo-agent serve\n"},
		{"etc/systemd/system/octo-agent@.service", "ExecReload=/opt/octo/bin/octo-agent reload --socket /run/octo/agent-%i.sock\n"},
		{"etc/systemd/user/octo-user.service", "ExecReload=/opt/octo/bin/octo-agent reload\n"},
		{"etc/systemd/system-generators/octo-agent-slices", "exec /opt/octo/bin/octo agent-slices \"$@\"\n"},
	} {
		data, err := os.ReadFile(filepath.Join(root, tc.unit))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(tc.want)) || bytes.Contains(data, []byte("/usr/local/bin")) {
			t.Errorf("%s: want %q and no /usr/local/bin; got:\n%s", tc.unit, tc.want, data)
		}
	}
}

func TestInstallRefusesBadInput(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown flag", []string{"DESTDIR=" + t.TempDir()}, []string{"--frobnicate"}, "unknown argument --frobnicate"},
		{"relative prefix", []string{"DESTDIR=" + t.TempDir(), "PREFIX=usr"}, nil, "PREFIX must be an absolute path"},
		{"no binaries in OCTO_BINDIR", []string{"DESTDIR=" + t.TempDir(), "OCTO_BINDIR=" + empty}, nil, "missing or not executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := install(t, tc.env, tc.args...)
			if err == nil {
				t.Fatalf("install.sh succeeded, want an error; output:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("install.sh output = %q, want it to say %q", out, tc.want)
			}
		})
	}
}

// verify runs systemd-analyze verify and fails on any complaint, warnings
// included (unknown keys are only warnings to systemd).
func verify(t *testing.T, env []string, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, args...)...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestSystemUnitsVerify(t *testing.T) {
	need(t, "systemd-analyze")
	root := stagedRoot(t, "")
	dir := filepath.Join(root, "etc/systemd/system")
	// Templates are verified as instances.
	for _, u := range []string{"octo-agent@.socket", "octo-agent@.service"} {
		data, err := os.ReadFile(filepath.Join(dir, u))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, strings.Replace(u, "@", "@dev-ops", 1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verify(t, []string{"PATH=" + os.Getenv("PATH")}, dir, "--root="+root,
		"octo.socket", "octo-api.socket", "octo.service", "octo-agent@dev-ops.socket", "octo-agent@dev-ops.service")
}

func TestUserUnitsVerify(t *testing.T) {
	need(t, "systemd-analyze")
	// systemd-analyze has no --root for --user: install for a scratch HOME
	// whose PREFIX holds stub binaries, and point the user manager there.
	home, prefix, xdg := t.TempDir(), t.TempDir(), t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_RUNTIME_DIR=" + xdg}
	out, err := install(t, append(env[1:], "PREFIX="+prefix, "OCTO_BINDIR="+stubBinaries(t)), "--user")
	if err != nil {
		t.Fatalf("install.sh --user: %v\n%s", err, out)
	}
	conf, err := os.ReadFile(filepath.Join(home, ".config/octo/config.toml"))
	if err != nil {
		t.Fatalf("install.sh --user wrote no config: %v", err)
	}
	if want := `listen = "127.0.0.1:3000"`; !bytes.Contains(conf, []byte(want)) {
		t.Errorf("user config lacks %s:\n%s", want, conf)
	}
	// The user's own binaries: no need to hide them from their owner.
	for _, b := range []string{"octo", "octo-agent", "octo-agent-dial"} {
		path := filepath.Join(prefix, "bin", b)
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("install.sh --user: %v", err)
			continue
		}
		if got := fi.Mode().Perm(); got != 0o755 {
			t.Errorf("install.sh --user: %s mode = %o, want 755", path, got)
		}
	}
	dir := filepath.Join(home, ".config/systemd/user")
	verify(t, env, dir, "--user", "octo.socket", "octo-api.socket", "octo.service", "octo-user.socket", "octo-user.service")
}

// TestVerifyCatchesBrokenUnit shows that the checks above can fail: a unit
// whose ExecStart is missing, and one with a misspelt key, are reported.
func TestVerifyCatchesBrokenUnit(t *testing.T) {
	need(t, "systemd-analyze")
	root := stagedRoot(t, "")
	dir := filepath.Join(root, "etc/systemd/system")
	for _, tc := range []struct{ name, unit, from, to, want string }{
		{"missing binary", "octo.service", "ExecStart=/usr/local/bin/octo serve", "ExecStart=/usr/local/bin/octo-nope serve", "not executable"},
		{"misspelt key", "octo.socket", "NoDelay=yes", "NoDelay=yes\nListenStrem=4000", "Unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.unit)
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, orig, 0o644)
			if err := os.WriteFile(path, bytes.Replace(orig, []byte(tc.from), []byte(tc.to), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root, tc.unit)
			cmd.Dir = dir
			out, _ := cmd.CombinedOutput()
			if !bytes.Contains(out, []byte(tc.want)) {
				t.Errorf("verify of a unit with a %s said %q, want it to mention %q", tc.name, out, tc.want)
			}
		})
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)

// exposure returns systemd-analyze security's overall exposure of unit.
func exposure(t *testing.T, root, unit string) float64 {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", "--root="+root, unit).CombinedOutput()
	m := exposureRE.FindSubmatch(out)
	if m == nil || string(m[1]) != unit {
		t.Fatalf("systemd-analyze security %s: %v, no exposure level in:\n%s", unit, err, out)
	}
	v, err := strconv.ParseFloat(string(m[2]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSecurityExposure(t *testing.T) {
	need(t, "systemd-analyze")
	root := stagedRoot(t, "")
	for _, tc := range []struct {
		unit string
		max  float64
	}{
		{"octo.service", 2.0},
		{"octo-agent@alice.service", 4.5},
		{"octo-agent@dev-ops.service", 4.5},
	} {
		got := exposure(t, root, tc.unit)
		t.Logf("%s exposure %.1f (limit %.1f)", tc.unit, got, tc.max)
		if got > tc.max {
			t.Errorf("%s exposure = %.1f, want <= %.1f", tc.unit, got, tc.max)
		}
	}
	// The yardstick: a unit with only the four basics scores far worse, so
	// the numbers above come from the hardening, not from the tool.
	basic := "[Service]\nExecStart=/usr/local/bin/octo-agent serve\nNoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\n"
	if err := os.WriteFile(filepath.Join(root, "etc/systemd/system/octo-basic.service"), []byte(basic), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := exposure(t, root, "octo-basic.service"); got < 8 {
		t.Errorf("basic unit exposure = %.1f, want >= 8 (is the checker reading our files?)", got)
	}
}

// TestInstallBuildsBinaries runs the installer the README's way (it builds
// both programs itself) into a staging root, and runs what it installed.
func TestInstallBuildsBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: builds octo and octo-agent")
	}
	need(t, "go")
	root := t.TempDir()
	env := []string{"DESTDIR=" + root, "HOME=" + os.Getenv("HOME"), "GOCACHE=" + os.Getenv("GOCACHE"), "GOPATH=" + os.Getenv("GOPATH"), "GOFLAGS=" + os.Getenv("GOFLAGS")}
	if out, err := install(t, env); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for _, b := range []string{"octo", "octo-agent", "octo-agent-dial"} {
		out, err := exec.Command(filepath.Join(root, "usr/local/bin", b), "version").CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) == 0 {
			t.Errorf("installed %s version: %v %q", b, err, out)
		}
	}
	// The default config it installs is the documented one.
	got, err := os.ReadFile(filepath.Join(root, "etc/octo/config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../testdata/config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("installed /etc/octo/config.toml differs from testdata/config.example.toml")
	}
}

// TestReinstallKeepsConfig: installing again (an upgrade) replaces units and
// binaries but never the administrator's /etc/octo/config.toml.
func TestReinstallKeepsConfig(t *testing.T) {
	root := t.TempDir()
	env := []string{"DESTDIR=" + root, "OCTO_BINDIR=" + stubBinaries(t)}
	if out, err := install(t, env); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	conf := filepath.Join(root, "etc/octo/config.toml")
	edited := []byte("[users]\nallow = [\"alice\"]\n")
	if err := os.WriteFile(conf, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(root, "etc/systemd/system/octo.service")
	if err := os.WriteFile(unit, []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := install(t, env); err != nil {
		t.Fatalf("second install.sh: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(conf); !bytes.Equal(got, edited) {
		t.Errorf("reinstall changed config.toml to %q, want the edited %q", got, edited)
	}
	if got, _ := os.ReadFile(unit); bytes.Equal(got, []byte("stale\n")) {
		t.Errorf("reinstall left the stale octo.service in place")
	}
}
