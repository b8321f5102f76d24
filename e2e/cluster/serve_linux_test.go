package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"octo/e2e/slurmbox"
)

const config = `
[server]
listen = "127.0.0.1:3000"
agent_timeout = "10s"
[backend]
mode = "slurm"
[users]
allow = ["alice", "bob"]
[slurm]
listen = "10.99.1.1:3443"
advertise = "10.99.1.1:3443"
idle_timeout = "6s"
launch_timeout = "1m"
request_wait = "8s"
check_interval = "2s"
slurm_conf = "/etc/slurm/slurm.conf"
`

// server is octo installed in the box by units/install.sh, as the README
// says: octo.service (as user octo, socket-activated) and each user's
// system agent (octo-agent@USER.socket), through which it submits the
// user's agent jobs.
type server struct {
	c      *slurmbox.Cluster
	tokens map[string]string
}

func startServer(t *testing.T, users ...string) *server {
	t.Helper()
	c := slurmbox.Start(t, users...)
	c.InstallAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The installer's sources and octo, copied into the box.
	bin := filepath.Join(t.TempDir(), "octo")
	if out, err := exec.Command("go", "build", "-o", bin, "octo/octo").CombinedOutput(); err != nil {
		t.Fatalf("build octo: %v\n%s", err, out)
	}
	src := c.Box.Path("/root/octo-src")
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"mkdir", "-p", src + "/testdata", c.Box.Path("/root/octo-bin")},
		{"cp", "-r", filepath.Join(strings.TrimSpace(string(root)), "units"), src + "/units"},
		{"cp", bin, c.Box.Path("/root/octo-bin/octo")},
		{"cp", c.Box.Path(slurmbox.AgentPath), c.Box.Path("/root/octo-bin/octo-agent")},
		{"cp", c.Box.Path(slurmbox.DialPath), c.Box.Path("/root/octo-bin/octo-agent-dial")},
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", cmd, err, out)
		}
	}
	if err := os.MkdirAll(c.Box.Path("/etc/octo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Box.Path("/etc/octo/config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "OCTO_BINDIR=/root/octo-bin sh /root/octo-src/units/install.sh\nsystemctl enable --now octo.socket"
	for _, u := range users {
		script += " octo-agent@" + u + ".socket"
	}
	if out, err := c.Box.Sh(ctx, script); err != nil {
		t.Fatalf("install octo: %v\n%s", err, out)
	}
	s := &server{c: c, tokens: map[string]string{}}
	for _, u := range users {
		tok, err := c.Run(ctx, "", "octo", "token", "create", u)
		if err != nil {
			t.Fatal(err)
		}
		s.tokens[u] = strings.TrimSpace(tok)
	}
	s.waitHealthy(ctx, t)
	return s
}

func (s *server) waitHealthy(ctx context.Context, t *testing.T) {
	t.Helper()
	for {
		if out, err := s.c.Run(ctx, "", "curl", "-sf", "http://127.0.0.1:3000/healthz"); err == nil && strings.TrimSpace(out) == "ok" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("octo serve not healthy\n%s", s.journal("octo.service"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *server) journal(unit string) string {
	out, _ := s.c.Run(context.Background(), "", "journalctl", "--no-pager", "-o", "cat", "-n", "60", "-u", unit)
	return out
}

// api calls the API as user and returns the HTTP status and body.
func (s *server) api(ctx context.Context, t *testing.T, user, method, path, body string) (int, []byte) {
	t.Helper()
	args := []string{"curl", "-s", "-o", "/dev/stdout", "-w", "\n%{http_code}", "-X", method,
		"-H", "Authorization: Bearer " + s.tokens[user], "http://127.0.0.1:3000" + path}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/json", "-d", body)
	}
	out, err := s.c.Run(ctx, "", args...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	i := strings.LastIndexByte(out, '\n')
	var code int
	fmt.Sscan(out[i+1:], &code)
	return code, []byte(out[:i])
}

type status struct {
	User      string `json:"user"`
	Placement string `json:"placement"`
	Job       *struct {
		ID   string `json:"id"`
		Node string `json:"node"`
	} `json:"job"`
	Agent struct {
		User string `json:"user"`
	} `json:"agent"`
}

func (s *server) status(ctx context.Context, t *testing.T, user string) status {
	t.Helper()
	code, body := s.api(ctx, t, user, "GET", "/api/v1/status", "")
	var st status
	if code != 200 || json.Unmarshal(body, &st) != nil || st.Job == nil {
		t.Fatalf("status for %s = %d %s, want 200 with a job\nocto:\n%s\nlocal agent:\n%s", user, code, body,
			s.journal("octo.service"), s.journal("octo-agent@"+user+".service"))
	}
	return st
}

// TestServeSlurm: the first request places alice's agent on h1 or h2 and
// status names job and node; a session's hostname is that node and its
// file is alice's, as is a file put through the API; after `systemctl
// restart` octo re-adopts the same job; bob's agent runs on the other node
// and a bounded load loop over both has no failed request; the idle
// agent's job ends, and the next request gets 503 with Slurm's pending
// reason while the partition is down, then a new job.
func TestServeSlurm(t *testing.T) {
	s := startServer(t, "alice", "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Two first requests at once: one job.
	both := s.c.Command(ctx, "", "/bin/sh", "-c", `for i in 1 2; do
	  curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $TOK" http://127.0.0.1:3000/api/v1/status &
	done; wait`)
	both.Env = append(both.Env, "TOK="+s.tokens["alice"])
	if out, err := both.Output(); err != nil || strings.Join(strings.Fields(string(out)), " ") != "200 200" {
		t.Fatalf("two first requests: %q %v, want 200 twice\n%s", out, err, s.journal("octo.service"))
	}
	if out, err := s.c.Run(ctx, "", "squeue", "--noheader", "--user=alice", "--format=%i"); err != nil || len(strings.Fields(out)) != 1 {
		t.Errorf("alice's jobs after two first requests: %q %v, want one", out, err)
	}
	st := s.status(ctx, t, "alice")
	if st.Placement != "slurm" || st.Agent.User != "alice" || (st.Job.Node != "h1" && st.Job.Node != "h2") {
		t.Errorf("status = %+v job %+v, want placement slurm, agent alice, node h1 or h2", st, *st.Job)
	}
	code, body := s.api(ctx, t, "alice", "POST", "/api/v1/sessions", `{"command":["sh","-c","hostname > where; cat where"]}`)
	var sess struct{ ID string }
	if code != 201 || json.Unmarshal(body, &sess) != nil {
		t.Fatalf("start session = %d %s", code, body)
	}
	code, body = s.api(ctx, t, "alice", "GET", "/api/v1/sessions/"+sess.ID+"/output?follow=1", "")
	if code != 200 || string(body) != st.Job.Node+"\n" {
		t.Errorf("session output = %d %q, want %q", code, body, st.Job.Node+"\n")
	}
	if owner, err := s.c.Run(ctx, "", "stat", "-c", "%U", "/home/alice/where"); err != nil || strings.TrimSpace(owner) != "alice" {
		t.Errorf("the session's file belongs to %q (%v), want alice", strings.TrimSpace(owner), err)
	}

	// Files cross the link (streamed: no descriptor passing between machines).
	payload := strings.Repeat("octo over TLS\n", 50000) // 700 KB
	if err := os.WriteFile(s.c.Box.Path("/root/payload"), []byte(payload), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := s.c.Run(ctx, "", "curl", "-sf", "-T", "/root/payload", "-H", "Authorization: Bearer "+s.tokens["alice"],
		"http://127.0.0.1:3000/api/v1/files/up/payload?parents=1"); err != nil {
		t.Fatalf("PUT a file: %v %s", err, out)
	}
	if code, body := s.api(ctx, t, "alice", "GET", "/api/v1/files/up/payload", ""); code != 200 || string(body) != payload {
		t.Errorf("GET the file back = %d, %d bytes; want 200 and the %d bytes put", code, len(body), len(payload))
	}
	if owner, err := s.c.Run(ctx, "", "stat", "-c", "%U", "/home/alice/up/payload"); err != nil || strings.TrimSpace(owner) != "alice" {
		t.Errorf("the uploaded file belongs to %q (%v), want alice", strings.TrimSpace(owner), err)
	}

	// A restart re-adopts the running job.
	if _, err := s.c.Run(ctx, "", "systemctl", "restart", "octo.service"); err != nil {
		t.Fatal(err)
	}
	s.waitHealthy(ctx, t)
	if again := s.status(ctx, t, "alice"); again.Job.ID != st.Job.ID {
		t.Errorf("after restart job %s, want %s re-adopted\n%s", again.Job.ID, st.Job.ID, s.journal("octo.service"))
	}

	// Load: alice and bob, both nodes busy, no failed request.
	bob := s.status(ctx, t, "bob")
	if bob.Job.ID == st.Job.ID || bob.Agent.User != "bob" || bob.Job.Node == st.Job.Node {
		t.Errorf("bob's status = %+v job %+v, want his own agent and job, on the other node than alice's %s", bob, *bob.Job, st.Job.Node)
	}
	script := `fail=0; for i in $(seq 40); do for u in alice bob; do
	  eval tok=\$TOK_$u
	  c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" http://127.0.0.1:3000/api/v1/files/)
	  [ "$c" = 200 ] || fail=$((fail+1)); done; done; echo $fail`
	cmd := s.c.Command(ctx, "", "/bin/sh", "-c", script)
	cmd.Env = append(cmd.Env, "TOK_alice="+s.tokens["alice"], "TOK_bob="+s.tokens["bob"])
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Errorf("load loop: %q failed requests (%v), want 0", out, err)
	}

	// Idle: the agent exits after 6s without requests; its job ends; the
	// next request submits another.
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := s.c.Run(ctx, "", "squeue", "--noheader", "--user=alice", "--name=octo-agent", "--format=%i")
		if err == nil && strings.TrimSpace(out) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's agent job never ended: %q %v", out, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// While Slurm holds the next job (its partition down), status says so
	// with Slurm's reason; once it runs, status names the new job.
	if _, err := s.c.Run(ctx, "", "scontrol", "update", "PartitionName=main", "State=DOWN"); err != nil {
		t.Fatal(err)
	}
	code, body = s.api(ctx, t, "alice", "GET", "/api/v1/status", "")
	if code != 503 || !strings.Contains(string(body), "agent_unavailable") || !strings.Contains(string(body), "pending in Slurm (reason: PartitionDown)") {
		t.Errorf("status while the job is held = %d %s, want 503 agent_unavailable naming the pending reason PartitionDown", code, body)
	}
	if _, err := s.c.Run(ctx, "", "scontrol", "update", "PartitionName=main", "State=UP"); err != nil {
		t.Fatal(err)
	}
	if next := s.status(ctx, t, "alice"); next.Job.ID == st.Job.ID {
		t.Errorf("after idle exit, job %s again; want a new job", next.Job.ID)
	}
}

// TestNodeFailure: when the node of alice's agent dies (every process in
// its namespace killed), requests get a clear 502 or 503 until Slurm
// declares the node down; then the next request places the agent on the
// other node, where the session that ran on the dead node reads lost.
func TestNodeFailure(t *testing.T) {
	s := startServer(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st := s.status(ctx, t, "alice")
	code, body := s.api(ctx, t, "alice", "POST", "/api/v1/sessions", `{"command":["sleep","600"]}`)
	var sess struct{ ID string }
	if code != 201 || json.Unmarshal(body, &sess) != nil {
		t.Fatalf("start session = %d %s", code, body)
	}
	dead := st.Job.Node
	if out, err := s.c.Box.Sh(ctx, "for p in $(ip netns pids "+dead+"); do kill -9 $p; done"); err != nil {
		t.Fatalf("kill node %s: %v %s", dead, err, out)
	}
	seen := map[int]int{}
	for {
		code, body := s.api(ctx, t, "alice", "GET", "/api/v1/status", "")
		seen[code]++
		if code == 200 {
			var now status
			json.Unmarshal(body, &now)
			if now.Job != nil && now.Job.Node != dead {
				break
			}
			t.Fatalf("status answered from the dead node %s: %s", dead, body)
		}
		if code != 502 && code != 503 {
			t.Errorf("status while %s is dead = %d %s, want 502 or 503", dead, code, body)
		}
		if ctx.Err() != nil {
			t.Fatalf("alice's agent never placed again; statuses %v\n%s", seen, s.journal("octo.service"))
		}
		time.Sleep(time.Second)
	}
	if seen[502]+seen[503] == 0 {
		t.Errorf("no 502 or 503 while %s was dead (statuses %v)", dead, seen)
	}
	code, body = s.api(ctx, t, "alice", "GET", "/api/v1/sessions/"+sess.ID, "")
	var got struct{ State string }
	if code != 200 || json.Unmarshal(body, &got) != nil || got.State != "lost" {
		t.Errorf("session from the dead node = %d %s, want state lost", code, body)
	}
	t.Logf("statuses while the node was dead: %v", seen)
}

// TestSlurmdKilled: when slurmd dies on the agent's node, Slurm takes the
// node down and ends the job; octo then drops the link (its job no longer
// runs, though the agent does) and places the agent on the other node.
// No request fails in between with anything but 502 or 503, and none is
// answered from the dead node's agent once octo has seen its job end.
func TestSlurmdKilled(t *testing.T) {
	s := startServer(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st := s.status(ctx, t, "alice")
	dead := st.Job.Node
	if _, err := s.c.Box.Sh(ctx, "kill -9 $(systemctl show --property=MainPID --value octo-slurmd-"+dead+")"); err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for {
		code, body := s.api(ctx, t, "alice", "GET", "/api/v1/status", "")
		seen[code]++
		if code == 200 {
			var now status
			json.Unmarshal(body, &now)
			if now.Job != nil && now.Job.Node != dead {
				if now.Job.ID == st.Job.ID {
					t.Errorf("job %s moved nodes?", now.Job.ID)
				}
				break
			}
		} else if code != 502 && code != 503 {
			t.Errorf("status after slurmd died on %s = %d %s, want 200, 502 or 503", dead, code, body)
		}
		if ctx.Err() != nil {
			t.Fatalf("alice's agent never placed again; statuses %v\n%s", seen, s.journal("octo.service"))
		}
		time.Sleep(time.Second)
	}
	if !strings.Contains(s.journal("octo.service"), "agent link closed: its job is no longer running") {
		t.Errorf("octo did not drop the link of the ended job\n%s", s.journal("octo.service"))
	}
	t.Logf("statuses after slurmd died: %v", seen)
}
