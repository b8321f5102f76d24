//go:build linux

package e2e

import (
	"bufio"
	"context"
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

// BenchmarkColdStart measures a user's first request of the day: the agent
// is not running, and systemd starts it from its socket. Four arrangements
// run side by side in one box, each on its own socket per user:
//
//   - floor: a trivial socket-activated Go HTTP service (bench/floor) on a
//     template socket with User=%i, the least an activated service costs;
//   - sandboxed: the same service under the agent unit's sandboxing lines
//     (NoNewPrivileges= through SystemCallFilter=, copied from the installed
//     octo-agent@.service);
//   - + limits: the sandboxed floor with the agent unit's per-user limits
//     too (TasksMax= through IOWeight=), which octo must carry;
//   - octo: GET /api/v1/status through the control plane (running, warm) to
//     the user's agent, which systemd starts.
//
// It reports one cold request (median over OCTO_BENCH_SINGLES users), then
// bursts of OCTO_BENCH_SMALL and OCTO_BENCH_USERS users' first requests, 8 at
// a time (wall time, p50, p99), each OCTO_BENCH_ROUNDS times (a burst's wall
// varies by about 10% from one to the next), and the resident memory of
// idle agents.
// Run it with bench/coldstart.sh; it ignores b.N (use -benchtime 1x).
func BenchmarkColdStart(b *testing.B) {
	bx := setup(b)
	ctx := context.Background()
	singles := envInt(b, "OCTO_BENCH_SINGLES", 15)
	small := envInt(b, "OCTO_BENCH_SMALL", 300)
	big := envInt(b, "OCTO_BENCH_USERS", 1000)
	rounds := max(1, envInt(b, "OCTO_BENCH_ROUNDS", 2))
	const conc = 8

	users := make([]string, singles+small+big)
	for i := range users {
		users[i] = fmt.Sprintf("cs%05d", i)
	}
	start := time.Now()
	sandbox, limits := installFloor(b, bx)
	installFloorUnits(b, bx, map[string][]string{"octo-floor": nil, "octo-floorsb": sandbox,
		"octo-floorlim": append(slices.Clone(sandbox), limits...)})
	admin := coldStartUsers(b, bx, users, "octo-floor", "octo-floorsb", "octo-floorlim", "octo-agent")
	b.Logf("setup: %d users, their sockets and the floor units in %v", len(users), time.Since(start).Round(time.Millisecond))

	arr := []arrangement{
		{name: "floor", unit: "octo-floor@%s.service", slice: `system-octo\x2dfloor.slice`, req: floorRequest(bx, "/run/octo-floor/%s.sock")},
		{name: "sandboxed", unit: "octo-floorsb@%s.service", slice: `system-octo\x2dfloorsb.slice`, req: floorRequest(bx, "/run/octo-floorsb/%s.sock")},
		{name: "+limits", unit: "octo-floorlim@%s.service", slice: `system-octo\x2dfloorlim.slice`, req: floorRequest(bx, "/run/octo-floorlim/%s.sock")},
		{name: "octo", unit: "octo-agent@%s.service", slice: `system-octo\x2dagent.slice`, req: octoRequest(bx, admin)},
	}
	const fl, sb, lim, oc = 0, 1, 2, 3 // arr's indexes
	// The control plane is warm, as it is during a day.
	if err := arr[oc].req(ctx, "alice"); err != nil {
		b.Fatalf("warm-up: %v", err)
	}

	// One cold request each, the arrangements taking turns user by user so
	// that the machine's noise falls on all alike: the floor first, then the
	// others, rotated and reversed in turn. A sandboxed start measured 6-8
	// ms faster right after a bare one than after another sandboxed one (a
	// copy of the same unit, in BenchmarkSandboxDirectives), so each must
	// follow the floor as often as the others.
	one := make([][]time.Duration, len(arr))
	for i, u := range users[:singles] {
		order := []int{fl}
		for k := range len(arr) - 1 {
			order = append(order, 1+(k+i)%(len(arr)-1))
		}
		if (i/(len(arr)-1))%2 == 1 {
			slices.Reverse(order[1:])
		}
		for _, j := range order {
			settle()
			t0 := time.Now()
			if err := arr[j].req(ctx, u); err != nil {
				b.Fatalf("%s: cold request for %s: %v", arr[j].name, u, err)
			}
			one[j] = append(one[j], time.Since(t0))
		}
	}
	for _, a := range arr {
		stopAll(b, bx, a, users[:singles])
	}
	// What one cold start writes to the journal, which journald pays for.
	for _, a := range arr {
		out, _ := bx.Run(ctx, "journalctl", "--no-pager", "-o", "short-monotonic", "_SYSTEMD_UNIT="+fmt.Sprintf(a.unit, users[0]), "+", "UNIT="+fmt.Sprintf(a.unit, users[0]))
		b.Logf("journal of %s's first start (%s):\n%s", users[0], a.name, out)
	}
	out, _ := bx.Run(ctx, "journalctl", "--no-pager", "-o", "cat", "-u", "octo.service", "-n", "5")
	b.Logf("octo.service's last lines:\n%s", out)
	b.Logf("%-32s %14s %14s %14s %14s", "", "floor", "sandboxed", "+ limits", "octo")
	walls := func(label string, d [4]time.Duration) {
		b.Logf("%-32s %14v %14v %14v %14v   octo/sandboxed %.2f, octo/+limits %.2f, octo/floor %.2f", label,
			d[fl], d[sb], d[lim], d[oc], ratio(d[oc], d[sb]), ratio(d[oc], d[lim]), ratio(d[oc], d[fl]))
	}
	walls(fmt.Sprintf("one cold request, median of %d", singles), [4]time.Duration{median(one[fl]), median(one[sb]), median(one[lim]), median(one[oc])})
	b.ReportMetric(ratio(median(one[oc]), median(one[sb])), "cold-x-sandboxed")
	b.ReportMetric(ratio(median(one[oc]), median(one[lim])), "cold-x-limits")

	rest := users[singles:]
	for _, n := range []int{small, big} {
		group := rest[:n]
		rest = rest[n:]
		bursts := make([]burstResult, len(arr))
		var rss string
		// The arrangements take turns, a different one starting each
		// round; the same users' agents start again each round (their
		// state dirs made in the first: the next day's first request).
		for r := range rounds {
			round := make([]burstResult, len(arr))
			for i := range arr {
				k := (i + n + r) % len(arr)
				a := arr[k]
				before := cpuUsage(b, bx, a)
				round[k] = burst(ctx, a, group, conc)
				round[k].cpu = cpuUsage(b, bx, a).minus(before, n)
				if a.name == "octo" {
					rss = agentRSS(b, bx)
				}
				stopAll(b, bx, a, group)
				// systemd cleans up stopped units' cgroups after the stop
				// returns: let that finish before the next burst's CPU count.
				time.Sleep(3 * time.Second)
			}
			walls(fmt.Sprintf("%d users, %d at a time: round %d", n, conc, r+1), wallsOf(round))
			for k := range bursts {
				bursts[k].add(round[k], rounds)
			}
		}
		walls(fmt.Sprintf("  wall, all %d rounds", rounds), wallsOf(bursts))
		b.Logf("%-32s %14s %14s %14s %14s", "  p50 / p99 (ms)", bursts[fl].pct(), bursts[sb].pct(), bursts[lim].pct(), bursts[oc].pct())
		b.Logf("%-32s %14d %14d %14d %14d", "  failed", bursts[fl].failed, bursts[sb].failed, bursts[lim].failed, bursts[oc].failed)
		b.Logf("  CPU per first request, µs (mean of the rounds):")
		for _, part := range cpuParts {
			name := part.name
			b.Logf("    %-28s %14d %14d %14d %14d", name, bursts[fl].cpu[name], bursts[sb].cpu[name], bursts[lim].cpu[name], bursts[oc].cpu[name])
		}
		b.Logf("  idle agents' RSS after the last burst, KiB (min/median/max): %s", rss)
		b.ReportMetric(ratio(bursts[oc].wall, bursts[sb].wall), fmt.Sprintf("burst%d-x-sandboxed", n))
		b.ReportMetric(ratio(bursts[oc].wall, bursts[lim].wall), fmt.Sprintf("burst%d-x-limits", n))
		for k, r := range bursts {
			if r.failed > 0 {
				b.Errorf("%s: %d of %d first requests failed; first error: %v", arr[k].name, r.failed, n*rounds, r.err)
			}
		}
	}
}

// arrangement is one way of serving a user's first request.
type arrangement struct {
	name  string
	unit  string // the per-user service, with %s for the user
	slice string // the slice systemd puts the services in
	req   func(ctx context.Context, user string) error
}

// cpuParts are the cgroups (inside the box) whose CPU time a burst reports;
// "service" is the arrangement's own slice, "box" everything.
var cpuParts = []struct{ name, cgroup string }{
	{"service (all instances)", ""},
	{"octo.service", "system.slice/octo.service"},
	{"systemd (PID 1)", "init.scope"},
	{"journald", "system.slice/systemd-journald.service"},
	{"box (everything)", "."},
}

// cpuTimes is microseconds of CPU by part.
type cpuTimes map[string]int64

func (c cpuTimes) minus(before cpuTimes, n int) cpuTimes {
	d := cpuTimes{}
	for k, v := range c {
		d[k] = (v - before[k]) / int64(n)
	}
	return d
}

// cpuUsage reads usage_usec of each part's cgroup.
func cpuUsage(b *testing.B, bx *box.Box, a arrangement) cpuTimes {
	var script strings.Builder
	for _, p := range cpuParts {
		cg := p.cgroup
		if cg == "" {
			cg = "system.slice/" + a.slice
		}
		fmt.Fprintf(&script, "awk '$1==\"usage_usec\"{print $2}' '%s/%s/cpu.stat' 2>/dev/null || echo 0\n", bx.Cgroup2(), cg)
	}
	out, err := bx.Sh(context.Background(), script.String())
	if err != nil {
		b.Fatalf("read cpu.stat: %v\n%s", err, out)
	}
	f := strings.Fields(out)
	t := cpuTimes{}
	for i, p := range cpuParts {
		if i < len(f) {
			t[p.name], _ = strconv.ParseInt(f[i], 10, 64)
		}
	}
	return t
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// floorUnits is the floor's template socket and service; %[1]s is the
// unit's name, %[2]s extra [Service] lines.
const floorUnits = `cat > /etc/systemd/system/%[1]s@.socket <<'EOF'
[Socket]
ListenStream=/run/%[1]s/%%i.sock
SocketMode=0666
TriggerLimitIntervalSec=10s
TriggerLimitBurst=100
EOF
cat > /etc/systemd/system/%[1]s@.service <<'EOF'
[Unit]
StartLimitIntervalSec=10s
StartLimitBurst=60
[Service]
User=%%i
ExecStart=/usr/local/bin/octo-floor
%[2]s
EOF
`

// installFloor builds bench/floor into the box and returns two runs of lines
// of the installed octo-agent@.service: its sandbox (NoNewPrivileges=
// through SystemCallFilter=) and its per-user limits (TasksMax= through
// IOWeight=, issue 11's fairness), which a floor may carry to compare like
// with like.
func installFloor(b *testing.B, bx *box.Box) (sandbox, limits []string) {
	bin := filepath.Join(bx.Share(), "bin", "octo-floor")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./bench/floor")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build floor: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(bx.Path("/etc/systemd/system/octo-agent@.service"))
	if err != nil {
		b.Fatal(err)
	}
	sandbox = unitLines(string(unit), "NoNewPrivileges=", "SystemCallFilter=")
	limits = unitLines(string(unit), "TasksMax=", "IOWeight=")
	if len(sandbox) == 0 || len(limits) == 0 {
		b.Fatalf("no sandboxing or limit lines found in the installed octo-agent@.service:\n%s", unit)
	}
	if out, err := bx.Run(context.Background(), "install", "-m", "0755", box.Inside+"/bin/octo-floor", "/usr/local/bin/octo-floor"); err != nil {
		b.Fatalf("install floor: %v\n%s", err, out)
	}
	return sandbox, limits
}

// installFloorUnits installs a template socket and service for the floor
// under each name, with the given extra [Service] lines.
func installFloorUnits(b *testing.B, bx *box.Box, units map[string][]string) {
	var script strings.Builder
	for name, lines := range units {
		fmt.Fprintf(&script, floorUnits, name, strings.Join(lines, "\n"))
	}
	script.WriteString("systemctl daemon-reload\n")
	// The script goes through the share: it can be longer than an argument.
	path := filepath.Join(bx.Share(), "floor-units.sh")
	if err := os.WriteFile(path, []byte(script.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := bx.Run(context.Background(), "sh", "-e", box.Inside+"/floor-units.sh"); err != nil {
		b.Fatalf("install floor units: %v\n%s", err, out)
	}
}

// unitLines returns the unit's lines from the one starting with first
// through the one starting with last, without comments; nil if last does
// not follow first.
func unitLines(unit, first, last string) []string {
	var out []string
	for _, l := range strings.Split(unit, "\n") {
		if len(out) == 0 && !strings.HasPrefix(l, first) || l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
		if strings.HasPrefix(l, last) {
			return out
		}
	}
	return nil
}

// coldStartUsers adds users to the box (straight into /etc/passwd and
// /etc/group: useradd is much slower), starts their sockets of each
// template (NAME@USER.socket; octo-agent's enabled), and returns an admin
// token.
func coldStartUsers(b *testing.B, bx *box.Box, users []string, templates ...string) string {
	ctx := context.Background()
	// The users are cs00000, cs00001, ... with uid and gid 20000 + i.
	script := fmt.Sprintf(`set -e
i=0
while [ $i -lt %d ]; do
	u=$(printf cs%%05d $i); id=$((20000 + i))
	echo "$u:x:$id:$id::/home/$u:/bin/sh" >&3
	echo "$u:x:$id:" >&4
	install -d -m 0700 -o $id -g $id /home/$u
	i=$((i + 1))
done 3>>/etc/passwd 4>>/etc/group
`, len(users))
	if users[len(users)-1] != fmt.Sprintf("cs%05d", len(users)-1) {
		b.Fatalf("users must be cs00000 and on, in order")
	}
	if out, err := bx.Sh(ctx, script); err != nil {
		b.Fatalf("add users: %v\n%s", err, out)
	}
	// Start the sockets, a few hundred per systemctl call. octo's are
	// enabled, as an operator does, so that its generator places the
	// agents in their slices; the floors' are only started.
	var units, agents []string
	for _, u := range users {
		for _, t := range templates {
			if t == "octo-agent" {
				agents = append(agents, t+"@"+u+".socket")
			} else {
				units = append(units, t+"@"+u+".socket")
			}
		}
	}
	for c := range slices.Chunk(agents, 1000) {
		if out, err := bx.Run(ctx, append([]string{"systemctl", "enable", "--now"}, c...)...); err != nil {
			b.Fatalf("enable agent sockets: %v\n%s", err, out)
		}
	}
	for c := range slices.Chunk(units, 600) {
		if out, err := bx.Run(ctx, append([]string{"systemctl", "start"}, c...)...); err != nil {
			b.Fatalf("start sockets: %v\n%s", err, out)
		}
	}
	out, err := bx.Run(ctx, "/usr/local/bin/octo", "token", "create", "root", "--admin")
	if err != nil {
		b.Fatalf("admin token: %v", err)
	}
	f := strings.Fields(out)
	return f[len(f)-1]
}

// floorRequest returns a request to the floor's socket (sock has %s for
// the user), made the way octoRequest makes its: a new connection from the
// box's network namespace, one GET, Connection: close.
func floorRequest(bx *box.Box, sock string) func(context.Context, string) error {
	return func(ctx context.Context, user string) error {
		return get(ctx, bx, "unix", bx.Path(fmt.Sprintf(sock, user)), "/", "")
	}
}

// octoRequest returns GET /api/v1/status?user=USER through the control
// plane over TCP with an admin token.
func octoRequest(bx *box.Box, token string) func(context.Context, string) error {
	return func(ctx context.Context, user string) error {
		return get(ctx, bx, "tcp", "127.0.0.1:3000", "/api/v1/status?user="+user, token)
	}
}

func get(ctx context.Context, bx *box.Box, network, addr, path, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := bx.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", addr, path, resp.Status)
	}
	return nil
}

// burstResult is one arrangement's burst of first requests.
type burstResult struct {
	cpu    cpuTimes // per request
	wall   time.Duration
	lat    []time.Duration
	failed int
	err    error
}

// add adds o, one of rounds bursts, to r: walls and latencies add up,
// the CPU per request is the rounds' mean.
func (r *burstResult) add(o burstResult, rounds int) {
	r.wall += o.wall
	r.lat = append(r.lat, o.lat...)
	r.failed += o.failed
	if r.err == nil {
		r.err = o.err
	}
	if r.cpu == nil {
		r.cpu = cpuTimes{}
	}
	for k, v := range o.cpu {
		r.cpu[k] += v / int64(rounds)
	}
}

// wallsOf returns the four arrangements' wall times, to the millisecond.
func wallsOf(r []burstResult) (d [4]time.Duration) {
	for k := range d {
		d[k] = r[k].wall.Round(time.Millisecond)
	}
	return d
}

func (r burstResult) pct() string {
	if len(r.lat) == 0 {
		return "-"
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	p := func(q float64) int64 { return s[min(len(s)-1, int(q*float64(len(s))))].Milliseconds() }
	return fmt.Sprintf("%d / %d", p(0.50), p(0.99))
}

// burst sends each user's first request, conc at a time.
func burst(ctx context.Context, a arrangement, users []string, conc int) burstResult {
	var (
		mu  sync.Mutex
		res burstResult
		wg  sync.WaitGroup
	)
	next := make(chan string)
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range next {
				t := time.Now()
				err := a.req(ctx, u)
				d := time.Since(t)
				mu.Lock()
				res.lat = append(res.lat, d)
				if err != nil {
					if res.failed++; res.err == nil {
						res.err = fmt.Errorf("%s: %w", u, err)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, u := range users {
		next <- u
	}
	close(next)
	wg.Wait()
	res.wall = time.Since(t0)
	return res
}

// stopAll stops the arrangement's services for users, so that the next
// burst starts on a machine without them.
func stopAll(b *testing.B, bx *box.Box, a arrangement, users []string) {
	var units []string
	for _, u := range users {
		units = append(units, fmt.Sprintf(a.unit, u))
	}
	for c := range slices.Chunk(units, 600) {
		if out, err := bx.Run(context.Background(), append([]string{"systemctl", "stop"}, c...)...); err != nil {
			b.Fatalf("stop %s: %v\n%s", a.name, err, out)
		}
	}
}

// agentRSS returns the min, median and max resident memory of the running
// agents, in KiB, and the medians of its two parts: the binary's pages
// (file-backed, shared by every agent) and each agent's own (anonymous).
func agentRSS(b *testing.B, bx *box.Box) string {
	out, err := bx.Run(context.Background(), "sh", "-c",
		`for p in $(pgrep -x octo-agent); do awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} /^Rss(File|Shmem):/ {f += $2} END {print r, a, f}' /proc/$p/status; done`)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var rss, anon, file []int
	for _, line := range strings.Split(out, "\n") {
		var r, a, f int
		if n, _ := fmt.Sscan(line, &r, &a, &f); n == 3 {
			rss, anon, file = append(rss, r), append(anon, a), append(file, f)
		}
	}
	if len(rss) == 0 {
		return "no agents running"
	}
	for _, s := range [][]int{rss, anon, file} {
		slices.Sort(s)
	}
	return fmt.Sprintf("%d / %d / %d over %d agents (median: the binary's shared pages %d, its own %d)",
		rss[0], rss[len(rss)/2], rss[len(rss)-1], len(rss), file[len(file)/2], anon[len(anon)/2])
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(10 * time.Microsecond)
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// settle lets the machine finish what the previous start left behind
// (systemd's and journald's work after the request was answered) before the
// next single is timed, as a user's first request of the day finds it.
func settle() { time.Sleep(300 * time.Millisecond) }
