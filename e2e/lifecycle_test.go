//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"octo/e2e/box"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The lifecycle tests (5 to 8) run after the activation tests in
// activation_test.go; the file names keep that order.

// 5. With a short idle timeout the agent stops by itself (status 0); the next
// request starts it again and earlier output is still readable. Fifty
// idle-exit/restart cycles in a row do not trip a start limit.
func TestIdleExitAndRestart(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	unit := "octo-agent@carol.service"
	dropin := `mkdir -p /etc/systemd/system/octo-agent@carol.service.d
cat > /etc/systemd/system/octo-agent@carol.service.d/idle.conf <<'EOF'
[Service]
ExecStart=
ExecStart=/usr/local/bin/octo-agent serve --allow-user octo --idle-timeout 300ms
EOF
systemctl daemon-reload`
	if out, err := b.Sh(ctx, dropin); err != nil {
		t.Fatalf("idle drop-in: %v\n%s", err, out)
	}
	c := newClient(t, b, "carol")
	first := c.run("/bin/echo", "output-before-idle-exit")
	// The control plane keeps a pooled connection to the agent for a minute
	// (backend.DefaultIdleClose), which keeps the agent busy; restarting the
	// control plane drops it.
	dropPool := func() {
		t.Helper()
		if out, err := b.Run(ctx, "systemctl", "restart", "octo.service"); err != nil {
			t.Fatalf("restart octo.service: %v\n%s", err, out)
		}
	}
	dropPool()
	waitState(t, b, unit, "inactive", 15*time.Second)
	if got, want := unitProp(t, b, unit, "Result")+" "+unitProp(t, b, unit, "ExecMainStatus"), "success 0"; got != want {
		t.Errorf("after idle exit %s result and status = %q, want %q", unit, got, want)
	}
	var list struct {
		Sessions []session `json:"sessions"`
	}
	c.expect("GET", "/api/v1/sessions", nil, http.StatusOK, &list)
	if isActive(ctx, b, unit) != "active" {
		t.Errorf("the request after the idle exit did not start %s", unit)
	}
	if len(list.Sessions) == 0 {
		t.Fatal("after restart the agent lists no sessions")
	}
	if got := c.output(list.Sessions[len(list.Sessions)-1].ID); got != first {
		t.Errorf("output after idle restart = %q, want %q", got, first)
	}
	dropPool()

	// Fifty cycles, each a connection straight to the socket (as carol), so
	// that only the agent's idle timeout paces them.
	const cycles = 50
	sock := "/run/octo/agent-carol.sock"
	pids := map[int]bool{}
	start := time.Now()
	for i := 0; i < cycles; i++ {
		waitState(t, b, unit, "inactive", 15*time.Second)
		res := agentInfoAs(t, "carol", sock)
		if res.Info == nil {
			t.Fatalf("cycle %d: Agent.Info failed: %s (%s)", i, res.Error, res.Code)
		}
		if pids[res.Info.PID] {
			t.Fatalf("cycle %d: agent pid %d seen before: it did not restart", i, res.Info.PID)
		}
		pids[res.Info.PID] = true
	}
	t.Logf("%d idle-exit/restart cycles in %v", cycles, time.Since(start).Round(time.Millisecond))
	for _, u := range []string{unit, "octo-agent@carol.socket"} {
		if got := unitProp(t, b, u, "Result"); got != "success" {
			t.Errorf("after %d cycles %s result = %q, want success (start limit hit?)", cycles, u, got)
		}
	}
	if got := isActive(ctx, b, "octo-agent@carol.socket"); got != "active" {
		t.Errorf("after %d cycles the socket is %q, want active", cycles, got)
	}
	// And the API still reaches carol's agent.
	c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
}

// 5b. Many agent starts in a burst (an administrator's restarts, a crashing
// or quickly idling agent) trip neither the service's start limit nor the
// socket's trigger limit, either of which would fail the socket for good.
func TestAgentStartBurstKeepsSocket(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := newClient(t, b, "dev-ops")
	const starts = 40 // systemd's defaults: 5 starts per 10s, 20 triggers per 2s
	begin := time.Now()
	for i := 0; i < starts; i++ {
		if out, err := b.Run(ctx, "systemctl", "stop", "octo-agent@dev-ops.service"); err != nil {
			t.Fatalf("stop %d: %v\n%s", i, err, out)
		}
		if r := c.do("GET", "/api/v1/status", nil); r.Status != http.StatusOK {
			res, _ := b.Run(ctx, "systemctl", "show", "-p", "Result", "octo-agent@dev-ops.socket", "octo-agent@dev-ops.service")
			t.Fatalf("start %d of %d (after %v): %s\n%s", i+1, starts, time.Since(begin).Round(time.Millisecond), r, res)
		}
	}
	t.Logf("%d agent starts in %v", starts, time.Since(begin).Round(time.Millisecond))
	if got := isActive(ctx, b, "octo-agent@dev-ops.socket"); got != "active" {
		t.Errorf("after %d starts the socket is %q, want active", starts, got)
	}
}

// 6. Restarting octo.service while a client sends requests loses none.
func TestRestartLosesNoRequest(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := newClient(t, b, "alice")
	c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil) // agent up

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Bounded: at most 5000 requests or until the restarts are done.
			for i := 0; i < 2500; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := c.try("GET", "/api/v1/sessions", nil)
				sent.Add(1)
				if err != nil || r.Status != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %v", r, err))
				}
			}
		}()
	}
	pids := map[string]bool{unitProp(t, b, "octo.service", "MainPID"): true}
	for i := 0; i < 3; i++ {
		time.Sleep(300 * time.Millisecond)
		if out, err := b.Run(ctx, "systemctl", "restart", "octo.service"); err != nil {
			t.Errorf("restart %d: %v\n%s", i, err, out)
		}
		pids[unitProp(t, b, "octo.service", "MainPID")] = true
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests across 3 restarts, %d failed", sent.Load(), failed.Load())
	if len(pids) != 4 {
		t.Errorf("octo.service main pids %v: want 4 distinct (3 restarts)", pids)
	}
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during restarts; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	if sent.Load() < 20 {
		t.Errorf("only %d requests were sent: the loop did not overlap the restarts", sent.Load())
	}
}

// 7. systemd --user: with linger, alice's octo-user.socket agent serves her
// user-level control plane.
func TestUserManagerAgent(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	uid := installUserOcto(t, b)
	if out, _ := b.Run(ctx, "systemctl", "--user", "-M", "alice@", "is-active", "octo-user.service"); strings.TrimSpace(out) != "inactive" {
		t.Errorf("octo-user.service is %q before any request, want inactive", strings.TrimSpace(out))
	}
	// alice calls her own control plane on its Unix socket (SO_PEERCRED: no token).
	out, err := b.RunAs(ctx, "alice", "curl", "-sS", "--unix-socket", "/run/user/"+uid+"/octo.sock", "http://octo/api/v1/status")
	if err != nil {
		t.Fatalf("alice's user-level status: %v\n%s", err, out)
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status %q: %v", out, err)
	}
	if st.User != "alice" || st.Placement != "user" || fmt.Sprint(st.Agent.UID) != uid {
		t.Errorf("user-level status = %+v, want alice served by her user agent (placement user, uid %s)", st, uid)
	}
	mainPID, _ := b.Run(ctx, "systemctl", "--user", "-M", "alice@", "show", "-P", "MainPID", "octo-user.service")
	if strings.TrimSpace(mainPID) != fmt.Sprint(st.Agent.PID) {
		t.Errorf("agent pid %d is not octo-user.service's main pid %q", st.Agent.PID, strings.TrimSpace(mainPID))
	}
	// Over TCP (127.0.0.1:3001 here) with a token from her own state dir.
	tok, err := b.RunAs(ctx, "alice", "/usr/local/bin/octo", "token", "create", "alice", "--config", "/home/alice/.config/octo/config.toml")
	if err != nil {
		t.Fatalf("user-level token: %v", err)
	}
	f := strings.Fields(tok)
	if len(f) == 0 {
		t.Fatalf("octo token create printed no token")
	}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:3001/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+f[len(f)-1])
	resp, err := boxHTTP(b).Do(req)
	if err != nil {
		t.Fatalf("user-level control plane over TCP: %v", err)
	}
	var tst status
	json.NewDecoder(resp.Body).Decode(&tst)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || tst.Placement != "user" || tst.Agent.PID != st.Agent.PID {
		t.Errorf("user-level status over TCP = %d %+v, want 200 from the same user agent (pid %d)", resp.StatusCode, tst, st.Agent.PID)
	}
	// And the control plane itself runs as alice, under her manager.
	cpPID, _ := b.Run(ctx, "systemctl", "--user", "-M", "alice@", "show", "-P", "MainPID", "octo.service")
	if got, _ := procIDs(t, b, strings.TrimSpace(cpPID)); got != uid {
		t.Errorf("user-level octo.service runs as uid %s, want %s", got, uid)
	}
}

// 8. Stopping a user's agent stops their sessions' processes too, and the
// journal has the agent's lines.
func TestStopAgentStopsSessions(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := newClient(t, b, "alice")
	marker := "31415"
	s := c.start("/bin/sh", "-c", "sleep "+marker+" & sleep "+marker+"; wait")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := b.Run(ctx, "pgrep", "-c", "-u", "alice", "-f", "^sleep "+marker+"$")
		if strings.TrimSpace(out) == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s: want 2 sleep processes, pgrep counts %q", s.ID, strings.TrimSpace(out))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := b.Run(ctx, "systemctl", "stop", "octo-agent@alice.service"); err != nil {
		t.Fatalf("systemctl stop: %v\n%s", err, out)
	}
	if out, _ := b.Run(ctx, "pgrep", "-a", "-f", "sleep "+marker); strings.TrimSpace(out) != "" { // the sh too
		t.Errorf("after systemctl stop, session processes remain:\n%s", out)
	}
	if got := unitProp(t, b, "octo-agent@alice.service", "ControlGroup"); got != "" {
		if out, _ := b.Run(ctx, "cat", b.Cgroup2()+got+"/cgroup.procs"); strings.TrimSpace(out) != "" {
			t.Errorf("after stop, %s still holds processes:\n%s", got, out)
		}
	}
	// Lines the agent process itself wrote to stderr, under its unit.
	journal, err := b.Run(ctx, "journalctl", "--no-pager", "-o", "cat", "-u", "octo-agent@alice.service", "_COMM=octo-agent")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(journal, "session started") {
		t.Errorf("journalctl -u octo-agent@alice shows no log lines of the agent:\n%s", journal)
	}
	// The socket stays: the next call starts the agent again.
	c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
}

// installUserOcto gives alice, with linger, her own systemd --user octo
// (units/install.sh --user; the control plane on 127.0.0.1:3001, since the
// system one holds *:3000) and returns her uid. Each step is idempotent.
func installUserOcto(t *testing.T, b *box.Box) (uid string) {
	t.Helper()
	ctx := context.Background()
	uid = idOf(t, b, "-u", "alice")
	if out, err := b.Run(ctx, "loginctl", "enable-linger", "alice"); err != nil {
		t.Fatalf("enable-linger: %v\n%s", err, out)
	}
	if out, err := b.Run(ctx, "timeout", "30", "systemctl", "--user", "-M", "alice@", "is-system-running", "--wait"); err != nil && !strings.Contains(out, "degraded") {
		t.Fatalf("alice's systemd --user: %q %v", out, err)
	}
	script := `export HOME=/home/alice XDG_RUNTIME_DIR=/run/user/` + uid + `
PREFIX=/usr/local sh /octo-share/src/units/install.sh --user --no-binaries
mkdir -p ~/.config/systemd/user/octo.socket.d
printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:3001\n' > ~/.config/systemd/user/octo.socket.d/port.conf
systemctl --user daemon-reload
systemctl --user enable --now octo-user.socket octo.socket`
	if out, err := b.RunAs(ctx, "alice", "/bin/sh", "-ec", script); err != nil {
		t.Fatalf("user install: %v\n%s", err, out)
	}
	return uid
}
