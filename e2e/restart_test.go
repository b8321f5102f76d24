//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"octo/e2e/box"
)

// Restarts under keep-alive load (issue 18): wrk (Debian's, installed by
// .ci/setup-e2e.sh) holds 32 connections open and sends on each as fast as
// the server answers, as browsers, SDKs and load balancers do; it never
// retries, so every request a restart loses is counted.

// wrkResult is what wrk reports (and the Lua script's own counts, when it
// prints them).
type wrkResult struct {
	Requests                      int
	Connect, Read, Write, Timeout int
	Non2xx                        int
	Posts, Stops                  int // from mix.lua
	Out                           string
}

func (r wrkResult) errors() int { return r.Connect + r.Read + r.Write + r.Timeout }

func (r wrkResult) String() string {
	return fmt.Sprintf("%d requests, socket errors: connect %d, read %d, write %d, timeout %d; non-2xx %d",
		r.Requests, r.Connect, r.Read, r.Write, r.Timeout, r.Non2xx)
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkMix      = regexp.MustCompile(`mix: posts (\d+) stops (\d+)`)
)

func parseWrk(out string) (wrkResult, error) {
	r := wrkResult{Out: out}
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count in wrk's output:\n%s", out)
	}
	r.Requests, _ = strconv.Atoi(m[1])
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		r.Connect, _ = strconv.Atoi(m[1])
		r.Read, _ = strconv.Atoi(m[2])
		r.Write, _ = strconv.Atoi(m[3])
		r.Timeout, _ = strconv.Atoi(m[4])
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.Atoi(m[1])
	}
	if m := wrkMix.FindStringSubmatch(out); m != nil {
		r.Posts, _ = strconv.Atoi(m[1])
		r.Stops, _ = strconv.Atoi(m[2])
	}
	return r, nil
}

// startWrk starts wrk in the box against url as user (by token) for d;
// wait returns its figures.
func startWrk(t *testing.T, b *box.Box, user, url string, d time.Duration, extra ...string) (wait func() wrkResult) {
	t.Helper()
	if _, err := exec.LookPath("wrk"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("wrk not found and CI=true (run .ci/setup-e2e.sh): %v", err)
		}
		t.Skip("skipping: needs wrk (apt-get install wrk, or .ci/setup-e2e.sh)")
	}
	args := []string{"wrk", "-t2", "-c32", "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--timeout", "15s",
		"-H", "Authorization: Bearer " + tokens[user]}
	args = append(append(args, extra...), url)
	cmd := b.Command(context.Background(), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() wrkResult {
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("wrk: %v\n%s", err, out.String())
		}
		r, err := parseWrk(out.String())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

// restartUnderLoad restarts octo.service n times, spaced, while wrk runs,
// and returns octo's main pids.
func restartUnderLoad(t *testing.T, b *box.Box, n int, gap time.Duration) map[string]bool {
	t.Helper()
	pids := map[string]bool{unitProp(t, b, "octo.service", "MainPID"): true}
	for i := 0; i < n; i++ {
		time.Sleep(gap)
		if out, err := b.Run(context.Background(), "systemctl", "restart", "octo.service"); err != nil {
			t.Errorf("restart %d: %v\n%s", i, err, out)
		}
		pids[unitProp(t, b, "octo.service", "MainPID")] = true
	}
	return pids
}

// checkSockets fails the test unless octo's sockets and service are active.
func checkSockets(t *testing.T, b *box.Box) {
	t.Helper()
	for _, u := range []string{"octo.socket", "octo-api.socket", "octo.service"} {
		if got := isActive(context.Background(), b, u); got != "active" {
			t.Errorf("%s is %q, want active", u, got)
		}
	}
}

// 18a. GETs on 32 keep-alive connections while octo restarts three times:
// no socket error, no non-2xx.
func TestRestartKeepAliveLoad(t *testing.T) {
	b := setup(t)
	newClient(t, b, "alice").expect("GET", "/api/v1/status", nil, http.StatusOK, nil) // agent up
	wait := startWrk(t, b, "alice", apiURL+"/api/v1/status", 9*time.Second)
	pids := restartUnderLoad(t, b, 3, 2*time.Second)
	r := wait()
	t.Logf("wrk -c32 across 3 restarts: %v", r)
	if len(pids) != 4 {
		t.Errorf("octo.service main pids %v: want 4 distinct (3 restarts)", pids)
	}
	if r.errors() != 0 || r.Non2xx != 0 {
		t.Errorf("restarts lost requests: %v\n%s", r, r.Out)
	}
	if r.Requests < 1000 {
		t.Errorf("only %d requests: the load did not overlap the restarts", r.Requests)
	}
	checkSockets(t, b)
}

// mixLua sends, on each connection, GET status, and every 8th request a
// POST that starts a session (at most 25 a second per thread, to stay
// below the 1000 finished sessions an agent keeps, and none in the last
// seconds, which wrk ends without reading the answers in flight), after
// which another request stops it with DELETE. It counts the 201s (and the stops' 200s): a POST whose answer was
// lost would show as a socket error, and as a session the agent has but no
// 201 counted. wrk calls response() for any connection of the thread, so
// the kind of answer is told from its status and body.
const mixLua = `
threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) t0 = os.time() end
n, ids, posts, stops, sec, quota = 0, {}, 0, 0, 0, 0
local h = {["Authorization"] = "Bearer TOKEN", ["Content-Type"] = "application/json"}
function request()
  n = n + 1
  if #ids > 0 and n % 2 == 0 then
    return wrk.format("DELETE", "/api/v1/sessions/" .. table.remove(ids, 1) .. "?grace=0s", h)
  end
  local now = os.time()
  if now ~= sec then sec, quota = now, 25 end
  if now - t0 >= POSTFOR then quota = 0 end
  if n % 8 == 0 and quota > 0 then
    quota = quota - 1
    return wrk.format("POST", "/api/v1/sessions", h, '{"command":["sleep","60"]}')
  end
  return wrk.format("GET", "/api/v1/status", h)
end
function response(status, headers, body)
  if status == 201 then
    local id = body:match('"id":"([^"]+)"')
    if id then posts = posts + 1; table.insert(ids, id) end
  elseif status == 200 and body:find('"command"', 1, true) then
    stops = stops + 1
  end
end
function done(summary, latency, requests)
  local p, s = 0, 0
  for _, t in ipairs(threads) do p = p + t:get("posts"); s = s + t:get("stops") end
  io.write(string.format("mix: posts %d stops %d\n", p, s))
end
`

// sessionCount is how many sessions user's agent lists.
func sessionCount(t *testing.T, c *client) int {
	t.Helper()
	var list struct {
		Sessions []session `json:"sessions"`
	}
	c.expect("GET", "/api/v1/sessions", nil, http.StatusOK, &list)
	return len(list.Sessions)
}

// 18b. The same with POSTs and DELETEs mixed in (start and stop a
// session): no request lost, and the agent made exactly one session for
// every 201 the client counted, so no POST was processed unanswered.
func TestRestartKeepAliveMixedLoad(t *testing.T) {
	b := setup(t)
	c := newClient(t, b, "bob")
	before := sessionCount(t, c)
	if before > 200 {
		t.Fatalf("bob has %d sessions already; with the ~500 this test starts, the agent would prune some (it keeps 1000) and the count would not tell", before)
	}
	script := strings.NewReplacer("TOKEN", tokens["bob"], "POSTFOR", "8").Replace(mixLua)
	if err := os.WriteFile(filepath.Join(shareDir, "mix.lua"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	wait := startWrk(t, b, "bob", apiURL+"/api/v1/status", 11*time.Second, "-s", box.Inside+"/mix.lua")
	pids := restartUnderLoad(t, b, 3, 2*time.Second)
	r := wait()
	made := sessionCount(t, c) - before
	t.Logf("wrk -c32 GET/POST/DELETE mix across 3 restarts: %v; %d sessions started (201), %d stopped; the agent made %d", r, r.Posts, r.Stops, made)
	if len(pids) != 4 {
		t.Errorf("octo.service main pids %v: want 4 distinct (3 restarts)", pids)
	}
	if r.errors() != 0 || r.Non2xx != 0 {
		t.Errorf("restarts lost requests: %v\n%s", r, r.Out)
	}
	if r.Posts < 20 || r.Stops < 10 {
		t.Errorf("only %d POSTs and %d DELETEs answered: the mix did not run\n%s", r.Posts, r.Stops, r.Out)
	}
	if made != r.Posts {
		t.Errorf("the agent made %d sessions but the client got %d 201s: a POST was processed and its answer lost", made, r.Posts)
	}
	// Stop what the last requests started.
	b.Run(context.Background(), "pkill", "-u", "bob", "-x", "sleep")
	checkSockets(t, b)
}

// 18c. kill -9 of octo under load loses only the requests in flight (at
// most one per connection); systemd restarts it and the sockets stay.
func TestKillOctoUnderLoad(t *testing.T) {
	b := setup(t)
	newClient(t, b, "alice").expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	pid := unitProp(t, b, "octo.service", "MainPID")
	wait := startWrk(t, b, "alice", apiURL+"/api/v1/status", 6*time.Second)
	time.Sleep(2 * time.Second)
	if out, err := b.Run(context.Background(), "kill", "-9", pid); err != nil {
		t.Fatalf("kill -9 octo: %v\n%s", err, out)
	}
	r := wait()
	t.Logf("wrk -c32, octo killed with SIGKILL: %v", r)
	if r.errors() > 32 || r.Non2xx != 0 {
		t.Errorf("kill -9 of octo cost %d socket errors and %d non-2xx, want at most one per connection (32) and none\n%s", r.errors(), r.Non2xx, r.Out)
	}
	if now := unitProp(t, b, "octo.service", "MainPID"); now == pid || now == "0" {
		t.Errorf("octo.service main pid %s after kill -9 of %s: not restarted", now, pid)
	}
	if r.Requests < 1000 {
		t.Errorf("only %d requests: the load did not overlap the kill", r.Requests)
	}
	checkSockets(t, b)
}

// 18d. kill -9 of a user's agent under load costs no request: octo
// reconnects, and the socket starts a new agent.
func TestKillAgentUnderLoad(t *testing.T) {
	b := setup(t)
	newClient(t, b, "alice").expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	unit := "octo-agent@alice.service"
	pid := unitProp(t, b, unit, "MainPID")
	wait := startWrk(t, b, "alice", apiURL+"/api/v1/status", 6*time.Second)
	time.Sleep(2 * time.Second)
	if out, err := b.Run(context.Background(), "kill", "-9", pid); err != nil {
		t.Fatalf("kill -9 agent: %v\n%s", err, out)
	}
	r := wait()
	t.Logf("wrk -c32, alice's agent killed with SIGKILL: %v", r)
	if r.errors() != 0 || r.Non2xx != 0 {
		t.Errorf("kill -9 of an agent cost requests: %v\n%s", r, r.Out)
	}
	if now := unitProp(t, b, unit, "MainPID"); now == pid {
		t.Errorf("%s main pid still %s after kill -9", unit, pid)
	}
	if got := isActive(context.Background(), b, "octo-agent@alice.socket"); got != "active" {
		t.Errorf("octo-agent@alice.socket is %q after the agent's kill -9, want active", got)
	}
	checkSockets(t, b)
}
