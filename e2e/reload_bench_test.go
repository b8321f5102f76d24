//go:build linux

package e2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkReload reloads carol's agent (one running session) while a
// client calls the API: reload-ms is systemctl reload's time (the new
// binary serves when it returns), direct-ms the reload command's run as
// carol without systemctl, handover-ms the agent's own hand-over
// (RELOADING to adopted, from its log), call-max-ms and call-during-p50-ms
// the slowest and the median call that overlapped a reload (its
// systemctl's whole run), against call-p50-ms of the calls before the first
// and call-max-outside-ms, the slowest call that overlapped none.
func BenchmarkReload(b *testing.B) {
	bx := setup(b)
	ctx := context.Background()
	c := newClient(b, bx, "carol")
	const unit = "octo-agent@carol.service"
	s := c.start("/bin/sh", "-c", `i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done`)
	defer c.do("DELETE", "/api/v1/sessions/"+s.ID+"?grace=1s", nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sink := c.start("/bin/sh", "-c", "exec cat >/dev/null")
	defer c.do("DELETE", "/api/v1/sessions/"+sink.ID+"?grace=1s", nil)
	loop := runAPILoop(c, s.ID, sink.ID, stop, &wg)
	time.Sleep(200 * time.Millisecond)
	var total time.Duration
	var windows [][2]time.Time
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if out, err := bx.Run(ctx, "systemctl", "reload", unit); err != nil {
			b.Fatalf("reload: %v\n%s", err, out)
		}
		t1 := time.Now()
		total += t1.Sub(t0)
		windows = append(windows, [2]time.Time{t0, t1})
		time.Sleep(100 * time.Millisecond) // calls between reloads
	}
	b.StopTimer()
	// The same reload without systemctl: the reload command run as carol.
	var direct time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if out, err := bx.RunAs(ctx, "carol", "/usr/local/bin/octo-agent", "reload", "--socket", "/run/octo/agent-carol.sock"); err != nil {
			b.Fatalf("octo-agent reload: %v\n%s", err, out)
		}
		direct += time.Since(t0)
		windows = append(windows, [2]time.Time{t0, time.Now()})
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	var worst time.Duration
	var overlapped []time.Duration
	for _, w := range windows {
		in, _ := loop.during(w[0], w[1])
		worst = max(worst, slices.Max(append(in, 0)))
		overlapped = append(overlapped, in...)
	}
	slices.Sort(overlapped)
	_, p50 := loop.during(windows[0][0], windows[len(windows)-1][1]) // the calls before and after
	// The slowest call that overlapped no reload: the machine's noise.
	var worstOutside time.Duration
	loop.mu.Lock()
	for i, at := range loop.at {
		overlaps := false
		for _, w := range windows {
			overlaps = overlaps || at.Before(w[1]) && at.Add(loop.lat[i]).After(w[0])
		}
		if !overlaps {
			worstOutside = max(worstOutside, loop.lat[i])
		}
	}
	loop.mu.Unlock()
	if len(loop.failures) > 0 {
		b.Errorf("%d of %d calls failed across %d reloads; first: %s", len(loop.failures), len(loop.lat), b.N, loop.failures[0])
	}
	var took []float64
	for _, l := range strings.Split(journal(bx, unit), "\n") {
		if _, v, ok := strings.Cut(l, "msg=\"agent reloaded\""); ok {
			if _, d, ok := strings.Cut(v, "took="); ok {
				if dd, err := time.ParseDuration(strings.Fields(d)[0]); err == nil {
					took = append(took, float64(dd)/1e6)
				}
			}
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "reload-ms")
	b.ReportMetric(float64(direct.Milliseconds())/float64(b.N), "direct-ms")
	if len(took) > 0 {
		b.ReportMetric(took[len(took)/2], "handover-ms")
	}
	b.ReportMetric(float64(worst)/1e6, "call-max-ms")
	if len(overlapped) > 0 {
		b.ReportMetric(float64(overlapped[len(overlapped)/2])/1e6, "call-during-p50-ms")
	}
	b.ReportMetric(float64(p50)/1e6, "call-p50-ms")
	b.ReportMetric(float64(worstOutside)/1e6, "call-max-outside-ms")
}
