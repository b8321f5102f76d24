//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"octo/e2e/box"
)

// BenchmarkSandboxDirectives measures what each sandboxing line of the
// installed octo-agent@.service costs a cold start. The activation floor
// (bench/floor) is started OCTO_BENCH_STARTS times, one user after another,
// under each of: no sandbox, the whole sandbox, each line alone, and every
// line but one. For each it reports the median latency of the first request
// and the CPU time of the start (the service's slice plus systemd's PID 1),
// so that a line's cost shows alone (against none) and at the margin
// (against all). Run it with bench/coldstart.sh directives.
func BenchmarkSandboxDirectives(b *testing.B) {
	bx := setup(b)
	ctx := context.Background()
	starts := envInt(b, "OCTO_BENCH_STARTS", 10)
	sandbox, limits := installFloor(b, bx)

	type variant struct {
		label, name string
		lat         []time.Duration
		cpu         []int64 // µs
	}
	units := map[string][]string{"octo-floor": nil, "octo-floorsb": sandbox}
	vs := []*variant{{label: "(none)", name: "octo-floor"}, {label: "(all)", name: "octo-floorsb"}}
	// OCTO_BENCH_EXTRAS_ONLY=1 measures only the lines beyond the sandbox.
	for k, line := range sandbox {
		if os.Getenv("OCTO_BENCH_EXTRAS_ONLY") != "" {
			break
		}
		alone, without := fmt.Sprintf("octo-fa%02d", k), fmt.Sprintf("octo-fw%02d", k)
		units[alone] = []string{line}
		units[without] = slices.Delete(slices.Clone(sandbox), k, k+1)
		vs = append(vs, &variant{label: "alone: " + line, name: alone}, &variant{label: "without: " + line, name: without})
	}
	// The agent unit's other [Service] lines, each added to the whole
	// sandbox: what they cost beyond it.
	for k, extra := range [][]string{
		{"Type=notify", "NotifyAccess=main"},
		{"StateDirectory=octo-floor/%i", "StateDirectoryMode=0700"},
		{"WorkingDirectory=~"},
		{"KillMode=control-group", "TimeoutStopSec=15s"},
		limits,
	} {
		with := fmt.Sprintf("octo-fx%02d", k)
		units[with] = append(slices.Clone(sandbox), extra...)
		vs = append(vs, &variant{label: "all + " + strings.Join(extra, " "), name: with})
	}
	installFloorUnits(b, bx, units)
	users := make([]string, starts)
	for i := range users {
		users[i] = fmt.Sprintf("cs%05d", i)
	}
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.name
	}
	coldStartUsers(b, bx, users, names...)

	for i, u := range users {
		for k := range vs {
			v := vs[(i+k)%len(vs)]
			slice := `system.slice/system-` + strings.ReplaceAll(v.name, "-", `\x2d`) + ".slice"
			settle()
			before := cgroupCPU(b, bx, slice, "init.scope")
			t0 := time.Now()
			if err := get(ctx, bx, "unix", bx.Path("/run/"+v.name+"/"+u+".sock"), "/", ""); err != nil {
				b.Fatalf("%s for %s: %v", v.label, u, err)
			}
			v.lat = append(v.lat, time.Since(t0))
			after := cgroupCPU(b, bx, slice, "init.scope")
			v.cpu = append(v.cpu, after-before)
		}
	}
	med := func(x []int64) int64 { s := slices.Clone(x); slices.Sort(s); return s[len(s)/2] }
	none, all := vs[0], vs[1]
	b.Logf("%-62s %10s %10s %12s", "sandbox", "latency", "CPU µs", "vs none/all")
	for _, v := range vs {
		ref := none
		if strings.HasPrefix(v.label, "without") || strings.HasPrefix(v.label, "all +") {
			ref = all
		}
		b.Logf("%-62s %10v %10d %+12d", trim(v.label, 62), median(v.lat), med(v.cpu), med(v.cpu)-med(ref.cpu))
	}
}

// cgroupCPU returns the CPU time (µs) of the cgroups inside the box, summed.
func cgroupCPU(b *testing.B, bx *box.Box, cgroups ...string) int64 {
	// A slice that has not started yet has no cgroup: it counts 0.
	script := "cat"
	for _, cg := range cgroups {
		script += " '" + bx.Cgroup2() + "/" + cg + "/cpu.stat'"
	}
	script += ` 2>/dev/null | awk '$1=="usage_usec"{s+=$2} END{print s+0}'`
	out, err := bx.Sh(context.Background(), script)
	if err != nil {
		b.Fatalf("read cpu.stat: %v\n%s", err, out)
	}
	var n int64
	fmt.Sscan(out, &n)
	return n
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
