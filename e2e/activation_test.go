//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// 1. After install, before any request, no octo or agent service runs; the
// first request to :3000 starts octo.service, as user octo.
func TestFirstRequestStartsControlPlane(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	for _, tc := range []struct{ unit, want string }{
		{"octo.socket", "active"},
		{"octo-api.socket", "active"},
		{"octo-agent@alice.socket", "active"},
		{"octo-agent@dev-ops.socket", "active"},
		{"octo.service", "inactive"},
		{"octo-agent@alice.service", "inactive"},
		{"octo-agent@bob.service", "inactive"},
	} {
		if got := isActive(ctx, b, tc.unit); got != tc.want {
			t.Errorf("after install, %s is %q, want %q", tc.unit, got, tc.want)
		}
	}
	// "systemctl enable --now octo.socket" enabled the API socket too (Also=).
	if out, err := b.Run(ctx, "systemctl", "is-enabled", "octo.socket", "octo-api.socket"); err != nil || strings.Join(strings.Fields(out), " ") != "enabled enabled" {
		t.Errorf("is-enabled octo.socket octo-api.socket = %q (%v), want both enabled", out, err)
	}
	if out, _ := b.Run(ctx, "systemctl", "list-units", "--no-legend", "--state=active", "octo*.service"); strings.TrimSpace(out) != "" {
		t.Errorf("before any request, services are running:\n%s", out)
	}

	r, err := boxHTTP(b).Get(apiURL + "/healthz")
	if err != nil {
		t.Fatalf("first request to :3000: %v", err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", r.StatusCode)
	}
	if got := isActive(ctx, b, "octo.service"); got != "active" {
		t.Fatalf("after the first request octo.service is %q, want active", got)
	}
	uid, _ := procIDs(t, b, unitProp(t, b, "octo.service", "MainPID"))
	if want := idOf(t, b, "-u", "octo"); uid != want {
		t.Errorf("octo.service runs as uid %s, want %s (octo)", uid, want)
	}
	// Inside octo.service's sandbox, as octo: the container socket dir is
	// writable (ReadWritePaths=), the rest of the system is read-only even
	// where file modes would allow it.
	octoUID, octoGID := idOf(t, b, "-u", "octo"), idOf(t, b, "-g", "octo")
	inService := func(argv ...string) (string, error) {
		return b.Run(ctx, append([]string{"nsenter", "-t", unitProp(t, b, "octo.service", "MainPID"), "-m", "-S", octoUID, "-G", octoGID, "--"}, argv...)...)
	}
	if out, err := inService("touch", "/run/octo/containers/.probe"); err != nil {
		t.Errorf("octo cannot write [container] socket_dir /run/octo/containers: %v\n%s", err, out)
	}
	b.Run(ctx, "install", "-d", "-m", "1777", "/srv/open-to-all")
	if out, err := inService("touch", "/srv/open-to-all/octo"); err == nil || !strings.Contains(err.Error(), "Read-only file system") {
		t.Errorf("octo wrote outside its sandbox's writable paths: %v %s", err, out)
	}
	// The tokens root created before the first start are octo's now.
	out, err := b.Run(ctx, "stat", "-c", "%U %a", "/var/lib/octo/tokens.json")
	if got, want := strings.TrimSpace(out), "octo 600"; err != nil || got != want {
		t.Errorf("tokens.json owner and mode = %q (%v), want %q", got, err, want)
	}
	// The first API call of alice is the one that starts her agent (test 2).
	if got := isActive(ctx, b, "octo-agent@alice.service"); got != "inactive" {
		t.Errorf("healthz started alice's agent: octo-agent@alice.service is %q", got)
	}
}

// 2. A user's first API call starts their agent; the session runs with the
// user's uid, gid and home and the files it writes are theirs. A user whose
// name contains "-" works too.
func TestFirstCallStartsAgentAsUser(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	for _, user := range []string{"alice", "dev-ops"} {
		t.Run(user, func(t *testing.T) {
			unit := "octo-agent@" + user + ".service"
			if got := isActive(ctx, b, unit); got == "active" {
				t.Fatalf("%s already active before %s's first call", unit, user)
			}
			c := newClient(t, b, user)
			var st status
			c.expect("GET", "/api/v1/status", nil, http.StatusOK, &st)
			if got := isActive(ctx, b, unit); got != "active" {
				t.Fatalf("after %s's first call %s is %q, want active", user, unit, got)
			}
			wantUID, wantGID, wantHome := idOf(t, b, "-u", user), idOf(t, b, "-g", user), "/home/"+user
			if st.User != user || st.Placement != "system" || fmt.Sprint(st.Agent.UID) != wantUID || st.Agent.Home != wantHome {
				t.Errorf("status = %+v, want user %s placement system uid %s home %s", st, user, wantUID, wantHome)
			}
			uid, gid := procIDs(t, b, unitProp(t, b, unit, "MainPID"))
			if uid != wantUID || gid != wantGID {
				t.Errorf("%s runs as %s:%s, want %s:%s", unit, uid, gid, wantUID, wantGID)
			}

			out := c.run("/bin/sh", "-c", `id -u; id -g; echo "$HOME"; pwd; echo written > made-by-session.txt`)
			if got, want := strings.Fields(out), []string{wantUID, wantGID, wantHome, wantHome}; strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("session printed uid gid HOME cwd = %q, want %q", got, want)
			}
			owner, err := b.Run(ctx, "stat", "-c", "%U:%G", wantHome+"/made-by-session.txt")
			if got, want := strings.TrimSpace(owner), user+":"+user; err != nil || got != want {
				t.Errorf("file written by the session is owned by %q (%v), want %q", got, err, want)
			}
			// The Unix socket API knows the caller from the kernel: no token.
			out, err = b.RunAs(ctx, user, "curl", "-sS", "--unix-socket", "/run/octo/octo.sock", "http://octo/api/v1/status")
			var ust status
			if err != nil || json.Unmarshal([]byte(out), &ust) != nil || ust.User != user || fmt.Sprint(ust.Agent.UID) != wantUID {
				t.Errorf("status over /run/octo/octo.sock as %s = %q (%v), want %s's", user, out, err, user)
			}
			// And through the files API, the same file.
			if r := c.expect("GET", "/api/v1/files/made-by-session.txt", nil, http.StatusOK, nil); string(r.Body) != "written\n" {
				t.Errorf("GET files/made-by-session.txt = %q, want %q", r.Body, "written\n")
			}
		})
	}
}

// 2b. The agent's sandbox (octo-agent@.service hardening) leaves ordinary
// work alone: git, a C compiler, the network, /tmp; and it is really there:
// a world-writable directory outside home is read-only, /tmp is private.
func TestAgentSandboxAllowsOrdinaryWork(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	if out, err := b.Sh(ctx, "mkdir -p /srv/open && chmod 1777 /srv/open"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c := newClient(t, b, "bob")
	out := c.run("/bin/bash", "-c", `
mkdir -p work && cd work
git init -q . && git -c user.email=bob@box -c user.name=bob commit -q --allow-empty -m first && echo "git:$(git rev-list --count HEAD)"
printf 'int main(void){return 42;}\n' > t.c && cc -o t t.c && { ./t || echo "cc:$?"; }
echo private > /tmp/bob-tmp && echo "tmp:$(cat /tmp/bob-tmp)"
curl -fsS -o /dev/null http://127.0.0.1:3000/healthz && echo net:ok
touch /srv/open/bob 2>&1 || true
`)
	for _, want := range []string{"git:1", "cc:42", "tmp:private", "net:ok", "Read-only file system"} {
		if !strings.Contains(out, want) {
			t.Errorf("bob's session output lacks %q; output:\n%s", want, out)
		}
	}
	if _, err := b.Run(ctx, "test", "-e", "/tmp/bob-tmp"); err == nil {
		t.Errorf("bob's /tmp/bob-tmp is in the machine's /tmp: PrivateTmp is not in effect")
	}
	if _, err := b.Run(ctx, "test", "-e", "/srv/open/bob"); err == nil {
		t.Errorf("bob's agent wrote /srv/open/bob: ProtectSystem=strict is not in effect")
	}
}

// 3. alice cannot see or touch bob's sessions or files; a user with no agent
// socket gets 503 with the fix in the message.
func TestUsersAreIsolated(t *testing.T) {
	b := setup(t)
	alice, bob := newClient(t, b, "alice"), newClient(t, b, "bob")
	bobs := bob.start("sleep", "120")
	defer bob.do("DELETE", "/api/v1/sessions/"+bobs.ID, nil)
	bob.expect("PUT", "/api/v1/files/bob-secret.txt", []byte("bob only\n"), http.StatusCreated, nil)

	for _, tc := range []struct {
		name, method, path string
		want               []int
	}{
		{"get bob's session", "GET", "/api/v1/sessions/" + bobs.ID, []int{http.StatusNotFound}},
		{"read bob's session output", "GET", "/api/v1/sessions/" + bobs.ID + "/output", []int{http.StatusNotFound}},
		{"stop bob's session", "DELETE", "/api/v1/sessions/" + bobs.ID, []int{http.StatusNotFound}},
		{"bob's file by name", "GET", "/api/v1/files/bob-secret.txt", []int{http.StatusNotFound}},
		{"bob's file by path", "GET", "/api/v1/files/../bob/bob-secret.txt", []int{http.StatusNotFound, http.StatusBadRequest, http.StatusForbidden}},
		{"bob's file by absolute path", "GET", "/api/v1/files//home/bob/bob-secret.txt", []int{http.StatusNotFound, http.StatusBadRequest, http.StatusForbidden}},
		{"act as bob", "GET", "/api/v1/sessions?user=bob", []int{http.StatusForbidden}},
		{"write bob's file", "PUT", "/api/v1/files/../bob/bob-secret.txt", []int{http.StatusNotFound, http.StatusBadRequest, http.StatusForbidden}},
	} {
		r := alice.do(tc.method, tc.path, nil)
		if !contains(tc.want, r.Status) {
			t.Errorf("alice: %s (%s %s) = %s, want one of %v", tc.name, tc.method, tc.path, r, tc.want)
		}
		if strings.Contains(string(r.Body), "bob only") {
			t.Errorf("alice: %s leaked bob's file: %s", tc.name, r)
		}
	}
	// alice's list does not show bob's session; bob's still runs.
	if r := alice.expect("GET", "/api/v1/sessions", nil, http.StatusOK, nil); strings.Contains(string(r.Body), bobs.ID) {
		t.Errorf("alice's session list shows bob's session %s: %s", bobs.ID, r.Body)
	}
	var s session
	bob.expect("GET", "/api/v1/sessions/"+bobs.ID, nil, http.StatusOK, &s)
	if s.State != "running" {
		t.Errorf("bob's session after alice's attempts is %q, want running", s.State)
	}
	if r := bob.expect("GET", "/api/v1/files/bob-secret.txt", nil, http.StatusOK, nil); string(r.Body) != "bob only\n" {
		t.Errorf("bob's file = %q, want it untouched", r.Body)
	}

	// dave is served by the config, but no octo-agent@dave.socket exists.
	r := newClient(t, b, noSocket).do("GET", "/api/v1/status", nil)
	e := r.errorBody()
	if r.Status != http.StatusServiceUnavailable || e.Error.Code != "agent_unavailable" {
		t.Errorf("user without agent socket: %s, want 503 agent_unavailable", r)
	}
	if fix := "systemctl enable --now octo-agent@" + noSocket + ".socket"; !strings.Contains(e.Error.Message, fix) {
		t.Errorf("503 message %q does not tell the fix %q", e.Error.Message, fix)
	}
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// agentInfoAs calls Agent.Info on sock from inside the box as user, through
// the test binary's helper mode.
func agentInfoAs(t *testing.T, user, sock string) helperResult {
	t.Helper()
	out, err := setup(t).RunAs(context.Background(), user, "env", helperEnv+"=agent-info", "/octo-share/bin/e2e.test", sock)
	if err != nil {
		t.Fatalf("helper as %s: %v", user, err)
	}
	var res helperResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	return res
}

// 4. A user who can open an agent's socket (group octo) but is neither root,
// the owner nor octo is refused by the agent's peer check, and the journal
// says so.
func TestAgentRefusesStranger(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	sock := "/run/octo/agent-alice.sock"
	// The socket's mode lets eve in: this test is about the agent's check.
	if out, err := b.Run(ctx, "stat", "-c", "%U %G %a", sock); err != nil || strings.TrimSpace(out) != "alice octo 660" {
		t.Fatalf("%s: owner group mode = %q (%v), want %q", sock, out, err, "alice octo 660")
	}
	since := time.Now().Add(-time.Second).UTC().Format("2006-01-02 15:04:05 UTC")

	// Control: the owner is served.
	if res := agentInfoAs(t, "alice", sock); res.Info == nil || res.Info.User != "alice" {
		t.Fatalf("alice's own Agent.Info = %+v, want her info", res)
	}
	res := agentInfoAs(t, stranger, sock)
	if res.Info != nil {
		t.Fatalf("eve got alice's agent info %+v, want refusal", *res.Info)
	}
	if res.Code != "permission" && res.Code != "conn_lost" {
		t.Errorf("eve's call failed with %q (%s), want a permission refusal or a closed connection", res.Code, res.Error)
	}
	eveUID := idOf(t, b, "-u", stranger)
	deadline := time.Now().Add(5 * time.Second)
	for {
		journal, _ := b.Run(ctx, "journalctl", "--no-pager", "-o", "cat", "-u", "octo-agent@alice.service", "--since", since)
		if strings.Contains(journal, eveUID) && containsAny(strings.ToLower(journal), "refus", "denied", "reject", "not allowed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal of octo-agent@alice has no refusal naming uid %s; it says:\n%s", eveUID, journal)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// The installed units, checked by the box's running systemd (with the real
// users, binaries and paths): verify is silent and the exposure scores hold;
// and the installed binaries are execute-only for users.
func TestInstalledUnitsUnderSystemd(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	out, err := b.Run(ctx, "systemd-analyze", "verify", "--man=no",
		"octo.socket", "octo-api.socket", "octo.service", "octo-agent@alice.socket", "octo-agent@dev-ops.service")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify in the box: %v\n%s", err, out)
	}
	// The binaries are root's and execute-only for the rest: a user's agent
	// is non-dumpable from execve on (octo-agent/dumpable_linux_test.go).
	for _, bin := range []string{"/usr/local/bin/octo", "/usr/local/bin/octo-agent", "/usr/local/bin/octo-agent-dial"} {
		out, err := b.Run(ctx, "stat", "-c", "%a %U:%G", bin)
		if got, want := strings.TrimSpace(out), "711 root:root"; err != nil || got != want {
			t.Errorf("installed %s: mode and owner %q (%v), want %q", bin, got, err, want)
		}
		if out, err := b.RunAs(ctx, "alice", "head", "-c", "4", bin); err == nil {
			t.Errorf("alice can read %s (%q), want permission denied", bin, out)
		}
	}
	if out, err := b.RunAs(ctx, "alice", "/usr/local/bin/octo-agent", "version"); err != nil || !strings.HasPrefix(out, "octo-agent ") {
		t.Errorf("alice runs octo-agent version: %q, %v; want its version", out, err)
	}
	for _, tc := range []struct {
		unit string
		max  float64
	}{
		{"octo.service", 2.0},
		{"octo-agent@alice.service", 4.5},
	} {
		out, _ := b.Run(ctx, "systemd-analyze", "security", "--no-pager", tc.unit)
		var got float64
		i := strings.Index(out, "Overall exposure level for "+tc.unit+": ")
		if i < 0 {
			t.Errorf("systemd-analyze security %s printed no exposure level:\n%s", tc.unit, out)
			continue
		}
		fmt.Sscanf(out[i+len("Overall exposure level for "+tc.unit+": "):], "%g", &got)
		t.Logf("%s exposure %.1f under the running systemd (limit %.1f)", tc.unit, got, tc.max)
		if got <= 0 || got > tc.max {
			t.Errorf("%s exposure = %.1f, want 0 < x <= %.1f", tc.unit, got, tc.max)
		}
	}
}
