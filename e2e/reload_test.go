//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"octo/e2e/box"
)

// reloadVersion is the version string of the agent binary the reload
// test installs.
const reloadVersion = "e2e-reload"

// buildAgentVersion builds octo-agent with another version string into
// the share, and returns its path inside the box.
func buildAgentVersion(t *testing.T, version string) string {
	t.Helper()
	name := "octo-agent-" + version
	if _, err := os.Stat(filepath.Join(shareDir, "bin", name)); err == nil {
		return "/octo-share/bin/" + name // built by an earlier test of this box
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X octo/internal/agent.Version="+version,
		"-o", filepath.Join(shareDir, "bin", name), "./octo-agent")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	os.Chmod(filepath.Join(shareDir, "bin", name), 0o755)
	return "/octo-share/bin/" + name
}

// agentStatus is what the reload test reads of GET /api/v1/status.
type agentStatus struct {
	Agent struct {
		Version         string `json:"version"`
		PID             int    `json:"pid"`
		RunningSessions int    `json:"running_sessions"`
	} `json:"agent"`
}

// apiLoop calls the API until stop is closed: the status, a session, its
// output, and input to a sink session (a call octo does not repeat by
// itself, unless the agent says it did not run it). It records every
// call's latency and its failures.
type apiLoop struct {
	mu       sync.Mutex
	lat      []time.Duration
	at       []time.Time
	failures []string
	versions map[string]time.Time // first time each agent version answered
}

func runAPILoop(c *client, id, sink string, stop <-chan struct{}, wg *sync.WaitGroup) *apiLoop {
	l := &apiLoop{versions: map[string]time.Time{}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			method, path, body, want := "GET", []string{"/api/v1/status", "/api/v1/sessions/" + id, "/api/v1/sessions/" + id + "/output?offset=0", ""}[i%4], any(nil), http.StatusOK
			if i%4 == 3 {
				method, path, body, want = "POST", "/api/v1/sessions/"+sink+"/input", []byte("x\n"), http.StatusNoContent
			}
			t0 := time.Now()
			r, err := c.try(method, path, body)
			d := time.Since(t0)
			l.mu.Lock()
			l.lat, l.at = append(l.lat, d), append(l.at, t0)
			if err != nil || r.Status != want {
				l.failures = append(l.failures, fmt.Sprintf("%s %s: %v %v", method, path, r, err))
			} else if i%4 == 0 {
				var st agentStatus
				if json.Unmarshal(r.Body, &st) == nil {
					if _, ok := l.versions[st.Agent.Version]; !ok {
						l.versions[st.Agent.Version] = t0.Add(d)
					}
				}
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// during returns the latencies of the calls that overlapped [from, to], and
// the median of the others.
func (l *apiLoop) during(from, to time.Time) (in []time.Duration, medianOut time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Duration
	for i, t := range l.at {
		if t.Before(to) && t.Add(l.lat[i]).After(from) {
			in = append(in, l.lat[i])
		} else {
			out = append(out, l.lat[i])
		}
	}
	slices.Sort(out)
	if len(out) > 0 {
		medianOut = out[len(out)/2]
	}
	return in, medianOut
}

// counterLines checks that out's complete lines are 1, 2, 3, ... and
// returns how many.
func counterLines(t *testing.T, out string) int {
	t.Helper()
	lines := strings.Split(out[:strings.LastIndexByte(out, '\n')], "\n")
	for i, l := range lines {
		if n, err := strconv.Atoi(l); err != nil || n != i+1 {
			t.Fatalf("counter line %d is %q, want %d: output lost or repeated across the reload", i+1, l, i+1)
		}
	}
	return len(lines)
}

// waitOutput polls a session's output until it contains want.
func waitOutput(t *testing.T, c *client, id, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out := c.output(id)
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s: output lacks %q after 15s:\n%s", id, want, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// 9. systemctl reload runs a newly installed agent binary without ending
// alice's sessions: same pids, output without a lost or repeated byte, tty
// input still echoed, no failed API call; a broken binary leaves the old
// agent serving.
func TestReloadKeepsSessions(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := newClient(t, b, "alice")
	const unit = "octo-agent@alice.service"
	counter := c.start("/bin/sh", "-c", `i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done`)
	var tty session
	c.expect("POST", "/api/v1/sessions", map[string]any{"command": []string{"/bin/sh", "-i"}, "tty": true}, http.StatusCreated, &tty)
	sink := c.start("/bin/sh", "-c", "exec cat >/dev/null")
	waitOutput(t, c, counter.ID, "\n10\n")
	mainPID := unitProp(t, b, unit, "MainPID")
	v2 := buildAgentVersion(t, reloadVersion)
	defer func() {
		if t.Failed() {
			restoreAgent(t, b)
		}
	}()

	if out, err := b.Run(ctx, "install", "-m", "0711", v2, "/usr/local/bin/octo-agent"); err != nil {
		t.Fatalf("install the new agent: %v\n%s", err, out)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := runAPILoop(c, counter.ID, sink.ID, stop, &wg)
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	out, err := b.Run(ctx, "systemctl", "reload", unit)
	t1 := time.Now()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("systemctl reload %s: %v\n%s\njournal:\n%s", unit, err, out, journal(b, unit))
	}
	served, ok := loop.versions[reloadVersion]
	in, median := loop.during(t0, t1)
	t.Logf("systemctl reload took %v; the new binary answered %v after it began; %d calls overlapped the reload, the slowest %v (median of the others %v); %d calls in all",
		t1.Sub(t0), served.Sub(t0), len(in), slices.Max(append(in, 0)), median, len(loop.lat))
	if len(loop.failures) > 0 {
		t.Errorf("%d of %d API calls failed across the reload; first: %s", len(loop.failures), len(loop.lat), loop.failures[0])
	}
	if !ok {
		t.Errorf("no status call saw version %s; saw %v", reloadVersion, loop.versions)
	}

	if got := unitProp(t, b, unit, "MainPID"); got != mainPID {
		t.Errorf("%s MainPID %s after reload, want %s (the same process)", unit, got, mainPID)
	}
	if exe, _ := b.Run(ctx, "readlink", "/proc/"+mainPID+"/exe"); strings.TrimSpace(exe) != "/usr/local/bin/octo-agent" {
		t.Errorf("agent runs %q, want the new /usr/local/bin/octo-agent", strings.TrimSpace(exe))
	}
	var st agentStatus
	c.expect("GET", "/api/v1/status", nil, http.StatusOK, &st)
	if st.Agent.Version != reloadVersion || strconv.Itoa(st.Agent.PID) != mainPID || st.Agent.RunningSessions != 3 {
		t.Errorf("status after reload: %+v, want version %s, pid %s, 3 running sessions", st.Agent, reloadVersion, mainPID)
	}
	for _, s := range []session{counter, tty} {
		var got session
		c.expect("GET", "/api/v1/sessions/"+s.ID, nil, http.StatusOK, &got)
		if got.PID != s.PID || got.State != "running" {
			t.Errorf("session %s after reload: %+v, want pid %d running", s.ID, got, s.PID)
		}
	}
	n := counterLines(t, waitOutput(t, c, counter.ID, "\n"+strconv.Itoa(counterLines(t, c.output(counter.ID))+10)+"\n"))
	c.expect("POST", "/api/v1/sessions/"+tty.ID+"/input", []byte("echo tty-$((6*7))\n"), http.StatusNoContent, nil)
	waitOutput(t, c, tty.ID, "tty-42")

	// Binaries that cannot take over: one that runs but speaks another
	// hand-over format (the agent refuses it, saying why), one that does
	// not run at all (the reload command itself fails). Either way the
	// reload fails and the agent and its sessions serve on.
	for _, bad := range []struct{ name, script, journal string }{
		{"another protocol", "#!/bin/sh\ncase $1 in reload) exec " + v2 + " \"$@\";; esac\necho octo-agent handover 99 octo-agentrpc/99\n", "cannot take over"},
		{"not running", "#!/bin/sh\nexit 3\n", ""},
	} {
		if out, err := b.Sh(ctx, "printf '"+bad.script+"' >/tmp/broken && install -m 0755 /tmp/broken /usr/local/bin/octo-agent"); err != nil {
			t.Fatalf("install a broken agent: %v\n%s", err, out)
		}
		if out, err := b.Run(ctx, "systemctl", "reload", unit); err == nil {
			t.Errorf("%s: systemctl reload succeeded, want a failure:\n%s", bad.name, out)
		}
		if got := unitProp(t, b, unit, "ReloadResult"); got == "success" {
			t.Errorf("%s: ReloadResult=%s after a failed reload", bad.name, got)
		}
		if j := journal(b, unit); !strings.Contains(j, bad.journal) {
			t.Errorf("%s: journal lacks the failed reload's reason %q:\n%s", bad.name, bad.journal, j)
		}
		if got := isActive(ctx, b, unit); got != "active" {
			t.Errorf("%s: %s is %q after a failed reload, want active", bad.name, unit, got)
		}
		c.expect("GET", "/api/v1/status", nil, http.StatusOK, &st)
		if st.Agent.Version != reloadVersion || strconv.Itoa(st.Agent.PID) != mainPID || st.Agent.RunningSessions != 3 {
			t.Errorf("%s: status after a failed reload: %+v, want the same agent with 3 sessions", bad.name, st.Agent)
		}
		n = counterLines(t, waitOutput(t, c, counter.ID, "\n"+strconv.Itoa(n+10)+"\n"))
	}

	// The installer's upgrade path puts the suite's binary back: it reloads
	// the running agents (the sessions go on) and restarts octo.service.
	octoPID := unitProp(t, b, "octo.service", "MainPID")
	if out, err := b.Sh(ctx, "OCTO_BINDIR=/octo-share/bin sh /octo-share/src/units/install.sh --upgrade"); err != nil {
		t.Fatalf("install.sh --upgrade: %v\n%s", err, out)
	} else if !strings.Contains(out, "reloaded "+unit) {
		t.Errorf("install.sh --upgrade does not say it reloaded %s:\n%s", unit, out)
	}
	if got := unitProp(t, b, "octo.service", "MainPID"); got == octoPID || got == "0" {
		t.Errorf("octo.service MainPID %s after install.sh --upgrade, want a new one (was %s)", got, octoPID)
	}
	c.expect("GET", "/api/v1/status", nil, http.StatusOK, &st)
	if st.Agent.Version != "dev" || strconv.Itoa(st.Agent.PID) != mainPID || st.Agent.RunningSessions != 3 {
		t.Errorf("status after install.sh --upgrade: %+v, want version dev, pid %s, 3 sessions", st.Agent, mainPID)
	}
	counterLines(t, waitOutput(t, c, counter.ID, "\n"+strconv.Itoa(n+10)+"\n"))

	// Stop still works on sessions started by the old binary.
	var end session
	c.expect("DELETE", "/api/v1/sessions/"+counter.ID+"?grace=2s", nil, http.StatusOK, &end)
	if end.State != "exited" || end.Signal != "TERM" {
		t.Errorf("stop after reloads: %+v, want exited by TERM", end)
	}
	c.expect("DELETE", "/api/v1/sessions/"+tty.ID+"?grace=2s", nil, http.StatusOK, nil)
	c.expect("DELETE", "/api/v1/sessions/"+sink.ID+"?grace=2s", nil, http.StatusOK, nil)
}

// 10. A user's own agent (systemd --user) reloads the same way.
func TestUserAgentReload(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	uid := installUserOcto(t, b)
	api := func(method, path, body string) []byte {
		t.Helper()
		out, err := b.RunAs(ctx, "alice", "curl", "-sS", "-f", "-X", method, "--unix-socket", "/run/user/"+uid+"/octo.sock", "-d", body, "http://octo"+path)
		if err != nil {
			t.Fatalf("alice: %s %s: %v\n%s", method, path, err, out)
		}
		return []byte(out)
	}
	var s session
	json.Unmarshal(api("POST", "/api/v1/sessions", `{"command":["sleep","1000"]}`), &s)
	var before agentStatus
	json.Unmarshal(api("GET", "/api/v1/status", ""), &before)
	v2 := buildAgentVersion(t, reloadVersion)
	defer func() {
		if out, err := b.Sh(ctx, "install -m 0711 /octo-share/bin/octo-agent /usr/local/bin/octo-agent"); err != nil {
			t.Errorf("restore the agent binary: %v\n%s", err, out)
		}
		b.Run(ctx, "systemctl", "--user", "-M", "alice@", "reload", "octo-user.service")
		api("DELETE", "/api/v1/sessions/"+s.ID+"?remove=1", "")
	}()
	if out, err := b.Run(ctx, "install", "-m", "0711", v2, "/usr/local/bin/octo-agent"); err != nil {
		t.Fatalf("install the new agent: %v\n%s", err, out)
	}
	if out, err := b.Run(ctx, "systemctl", "--user", "-M", "alice@", "reload", "octo-user.service"); err != nil {
		t.Fatalf("systemctl --user reload octo-user.service: %v\n%s", err, out)
	}
	var after agentStatus
	json.Unmarshal(api("GET", "/api/v1/status", ""), &after)
	var got session
	json.Unmarshal(api("GET", "/api/v1/sessions/"+s.ID, ""), &got)
	if after.Agent.Version != reloadVersion || after.Agent.PID != before.Agent.PID || after.Agent.RunningSessions != before.Agent.RunningSessions {
		t.Errorf("user agent after reload: %+v, want version %s, pid %d, %d sessions", after.Agent, reloadVersion, before.Agent.PID, before.Agent.RunningSessions)
	}
	if got.PID != s.PID || got.State != "running" {
		t.Errorf("session after the user agent's reload: %+v, want pid %d running", got, s.PID)
	}
}

// restoreAgent puts the suite's agent binary back and reloads alice's agent.
func restoreAgent(t *testing.T, b *box.Box) {
	ctx := context.Background()
	if out, err := b.Sh(ctx, "install -m 0711 /octo-share/bin/octo-agent /usr/local/bin/octo-agent && systemctl reload octo-agent@alice.service"); err != nil {
		t.Errorf("restore the agent binary: %v\n%s", err, out)
	}
}

// journal returns a unit's journal lines.
func journal(b *box.Box, unit string) string {
	out, _ := b.Run(context.Background(), "journalctl", "--no-pager", "-o", "cat", "-u", unit)
	return out
}
