//go:build linux

package e2e

import (
	"context"
	"errors"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"octo/e2e/box"
	"octo/internal/agentrpc"
)

// doctor runs `octo doctor ARGS` in the box (as root, or as user with
// runuser) and returns its output and exit status.
func doctor(t *testing.T, b *box.Box, user string, args ...string) (string, int) {
	t.Helper()
	argv := append([]string{"/usr/local/bin/octo", "doctor"}, args...)
	if user != "" {
		argv = append([]string{"runuser", "-u", user, "--"}, argv...)
	}
	cmd := b.Command(context.Background(), argv...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("octo doctor %v: %v\n%s", args, err, out)
	return "", 0
}

// lineOf returns the report line of what at level ("ok", "warn", "FAIL").
func lineOf(out, level, what string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, level+" ") && strings.HasPrefix(strings.TrimSpace(l[len(level):]), what+":") {
			return l
		}
	}
	return ""
}

// A good install passes, as root and as a served user; each broken one
// gives a FAIL naming the fix, and passes again once the fix is applied.
func TestDoctor(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	// Checking an agent starts it; leave running only those that ran before
	// (later tests count on an agent they start themselves).
	running := activeAgents(ctx, b)
	t.Cleanup(func() {
		for _, u := range activeAgents(ctx, b) {
			if !slices.Contains(running, u) {
				b.Run(ctx, "systemctl", "stop", u)
			}
		}
	})
	out, code := doctor(t, b, "")
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("octo doctor on a good install exited %d:\n%s", code, out)
	}
	t.Logf("octo doctor on a good install:\n%s", out)
	for _, what := range []string{"config", "units", "octo.socket", "octo-api.socket", "runtime dir", "octo-agent", "control plane", "user alice", "agent alice", "agent bob"} {
		if lineOf(out, "ok", what) == "" {
			t.Errorf("good install: no ok line for %s:\n%s", what, out)
		}
	}
	if l := lineOf(out, "ok", "agent alice"); !strings.Contains(l, "answers") {
		t.Errorf("alice's agent line does not say it answered: %q", l)
	}
	out, code = doctor(t, b, "alice")
	if code != 0 || lineOf(out, "ok", "agent alice") == "" || lineOf(out, "ok", "api as alice") == "" {
		t.Errorf("octo doctor as alice exited %d, want 0 with her agent and the API checked:\n%s", code, out)
	}
	if strings.Contains(out, "agent bob") {
		t.Errorf("octo doctor as alice checked bob's agent:\n%s", out)
	}
	// A user without an agent learns what to ask for.
	out, code = doctor(t, b, stranger)
	if l := lineOf(out, "FAIL", "agent "+stranger); code != 1 || !strings.Contains(l, "fix: systemctl enable --now octo-agent@"+stranger+".socket") {
		t.Errorf("octo doctor as %s (no agent) exited %d, want 1 and the socket to enable:\n%s", stranger, code, out)
	}
	t.Logf("octo doctor as %s:\n%s", stranger, out)
	// As octo, the control plane's user, it checks every agent as octo does.
	if out, code := doctor(t, b, "octo"); code != 0 || lineOf(out, "ok", "agent bob") == "" || lineOf(out, "ok", "tokens") == "" {
		t.Errorf("octo doctor as octo exited %d, want 0 with bob's agent and the tokens checked:\n%s", code, out)
	}

	for _, tc := range []struct {
		name          string
		breakIt, fix  string // shell scripts run as root
		args          []string
		what, wantMsg string // the FAIL line's subject and text
		wantFix       string
		level         string // "FAIL" unless set
	}{{
		name:    "agent socket disabled",
		breakIt: "systemctl disable --now octo-agent@bob.socket",
		fix:     "systemctl enable --now octo-agent@bob.socket",
		args:    []string{"--user", "bob"},
		what:    "agent bob", wantMsg: "no agent socket /run/octo/agent-bob.sock",
		wantFix: "fix: systemctl enable --now octo-agent@bob.socket",
	}, {
		name:    "agent socket started but not enabled",
		breakIt: "systemctl disable octo-agent@bob.socket && systemctl start octo-agent@bob.socket",
		fix:     "systemctl enable octo-agent@bob.socket",
		args:    []string{"--user", "bob"},
		what:    "agent bob", wantMsg: "octo-agent@bob.socket listens but is disabled",
		wantFix: "fix: systemctl enable octo-agent@bob.socket",
		level:   "warn",
	}, {
		name:    "slices generator missing",
		breakIt: "mv /etc/systemd/system-generators/octo-agent-slices /root/octo-agent-slices",
		fix:     "mv /root/octo-agent-slices /etc/systemd/system-generators/octo-agent-slices",
		what:    "agent slices", wantMsg: "the generator octo-agent-slices is not installed",
		wantFix: "fix: install it: units/install.sh",
		level:   "warn",
	}, {
		name:    "agent not placed in a slice",
		breakIt: "mv /etc/systemd/system-generators/octo-agent-slices /root/octo-agent-slices && systemctl daemon-reload",
		fix:     "mv /root/octo-agent-slices /etc/systemd/system-generators/octo-agent-slices && systemctl daemon-reload",
		args:    []string{"--user", "bob"},
		what:    "agent bob", wantMsg: `octo-agent@bob.service is in system-octo\x2dagent.slice, not in a slice of its own`,
		wantFix: "fix: systemctl daemon-reload",
		level:   "warn",
	}, {
		name:    "socket mode 0666",
		breakIt: "chmod 0666 /run/octo/agent-carol.sock",
		fix:     "chmod 0660 /run/octo/agent-carol.sock",
		args:    []string{"--user", "carol"},
		what:    "agent carol", wantMsg: "mode 0666, want 0660",
		wantFix: "fix: systemctl restart octo-agent@carol.socket",
	}, {
		name: "agent of another protocol",
		breakIt: `mv /usr/local/bin/octo-agent /usr/local/bin/octo-agent.good
printf '#!/bin/sh\necho "octo-agent 0.9 (protocol octo-agentrpc/1)"\n' >/usr/local/bin/octo-agent
chmod 0755 /usr/local/bin/octo-agent`,
		fix:  "mv -f /usr/local/bin/octo-agent.good /usr/local/bin/octo-agent",
		args: []string{"--user", "dave"}, // no agent to start with the wrong binary
		what: "octo-agent", wantMsg: "speaks octo-agentrpc/1, octo speaks " + strings.TrimSpace(agentrpc.Preamble),
		wantFix: "fix: install octo and octo-agent from one build",
	}, {
		name:    "config with an unknown key",
		breakIt: `printf '[server]\nlisten = "0.0.0.0:3000"\nlisn = "x"\n' >/etc/octo/typo.toml`,
		fix:     "rm /etc/octo/typo.toml",
		args:    []string{"--config", "/etc/octo/typo.toml", "--user", "alice"},
		what:    "config", wantMsg: "/etc/octo/typo.toml:3: unknown key server.lisn (did you mean server.listen?)",
		wantFix: "fix: correct it in /etc/octo/typo.toml",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := b.Sh(ctx, tc.breakIt); err != nil {
				t.Fatalf("break: %v\n%s", err, out)
			}
			fixed := false
			defer func() {
				if !fixed {
					b.Sh(ctx, tc.fix)
				}
			}()
			out, code := doctor(t, b, "", tc.args...)
			level, wantCode := "FAIL", 1
			if tc.level != "" {
				level, wantCode = tc.level, 0
			}
			line := lineOf(out, level, tc.what)
			t.Logf("%s: %s", tc.name, line)
			if code != wantCode || !strings.Contains(line, tc.wantMsg) || !strings.Contains(line, tc.wantFix) {
				t.Errorf("doctor %v exited %d; want %d and a %s line for %s saying %q and %q:\n%s", tc.args, code, wantCode, level, tc.what, tc.wantMsg, tc.wantFix, out)
			}
			if out, err := b.Sh(ctx, tc.fix); err != nil {
				t.Fatalf("fix: %v\n%s", err, out)
			}
			fixed = true
			if tc.what == "config" {
				tc.args = tc.args[2:] // the installed config
			}
			if tc.what == "octo-agent" {
				tc.args = nil
			}
			if out, code := doctor(t, b, "", tc.args...); code != 0 || strings.Contains(out, tc.wantMsg) {
				t.Errorf("after the fix, doctor %v exited %d or still says %q:\n%s", tc.args, code, tc.wantMsg, out)
			}
		})
	}
}

// activeAgents lists the agent services that run.
func activeAgents(ctx context.Context, b *box.Box) []string {
	out, _ := b.Run(ctx, "systemctl", "list-units", "--no-legend", "--plain", "--state=active", "octo-agent@*.service")
	var units []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			units = append(units, f[0])
		}
	}
	return units
}

// journalGrep polls `journalctl ARGS -o cat` until its output contains want.
func journalGrep(t *testing.T, b *box.Box, want string, args ...string) string {
	t.Helper()
	var out string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, _ = b.Run(context.Background(), append([]string{"journalctl", "--no-pager", "-o", "cat"}, args...)...)
		if strings.Contains(out, want) {
			return out
		}
	}
	t.Errorf("journalctl %v has no %q:\n%s", args, want, out)
	return out
}

// Under systemd octo and its agents log to the journal natively, with
// fields: `journalctl -u octo OCTO_USER=alice` shows alice's requests and
// nobody else's; an agent's lines about a session carry OCTO_SESSION.
func TestJournalFields(t *testing.T) {
	b := setup(t)
	alice, bob := newClient(t, b, "alice"), newClient(t, b, "bob")
	alice.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	bob.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	s := alice.start("true")
	out := journalGrep(t, b, "route=\"GET /api/v1/status\"", "-u", "octo.service", "OCTO_USER=alice", "OCTO_ROUTE=GET /api/v1/status", "OCTO_STATUS=200")
	if strings.Contains(out, "user=bob") {
		t.Errorf("OCTO_USER=alice selected bob's lines:\n%s", out)
	}
	journalGrep(t, b, "route=\"POST /api/v1/sessions\"", "-u", "octo.service", "OCTO_USER=alice", "OCTO_STATUS=201")
	journalGrep(t, b, "session started", "-u", "octo-agent@alice.service", "OCTO_SESSION="+s.ID)
}

// /metrics answers root on the Unix socket and admin tokens only.
func TestMetricsAdminsOnly(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	newClient(t, b, "alice").expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	curl := []string{"curl", "-s", "-w", "\n%{http_code}", "--unix-socket", "/run/octo/octo.sock", "http://octo/metrics"}
	out, err := b.Run(ctx, curl...)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(out), "\n200") || !strings.Contains(out, `octo_http_requests_total{route="GET /api/v1/status",code="200"}`) {
		t.Errorf("root's /metrics on the socket: %v\n%s", err, out)
	}
	if out, _ := b.RunAs(ctx, "alice", curl...); !strings.HasSuffix(strings.TrimSpace(out), "\n403") {
		t.Errorf("alice's /metrics on the socket: %s, want 403", out)
	}
	if r := newClient(t, b, "alice").do("GET", "/metrics", nil); r.Status != http.StatusForbidden {
		t.Errorf("/metrics with alice's token: %d, want 403", r.Status)
	}
}
