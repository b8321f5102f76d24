//go:build linux

package e2e

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"octo/e2e/box"
)

// BenchmarkAccessLogJournald is a warm GET /api/v1/status with the access
// log's read lines on and off ([server] access_log_reads), reporting the
// CPU octo.service and systemd-journald spend per request (the journal's
// share is what one line per GET costs the machine).
func BenchmarkAccessLogJournald(b *testing.B) {
	bx := setup(b)
	ctx := context.Background()
	orig, err := bx.Run(ctx, "cat", "/etc/octo/config.toml")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { setConfig(b, bx, orig) })
	for _, reads := range []bool{true, false} {
		b.Run("reads="+strconv.FormatBool(reads), func(b *testing.B) {
			line := "access_log_reads = " + strconv.FormatBool(reads)
			text := strings.Replace(orig, "access_log_reads = true", line, 1)
			if !strings.Contains(text, line) {
				b.Fatalf("the installed config has no access_log_reads line:\n%s", orig)
			}
			setConfig(b, bx, text)
			c := newClient(b, bx, "bob")
			c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
			octo0, jd0 := cpuNsec(b, bx, "octo.service"), cpuNsec(b, bx, "systemd-journald.service")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuNsec(b, bx, "octo.service")-octo0)/float64(b.N), "octo-cpu-ns/op")
			b.ReportMetric(float64(cpuNsec(b, bx, "systemd-journald.service")-jd0)/float64(b.N), "journald-cpu-ns/op")
		})
	}
}

// setConfig writes /etc/octo/config.toml and restarts octo.service.
func setConfig(b testing.TB, bx *box.Box, text string) {
	b.Helper()
	ctx := context.Background()
	cmd := bx.Command(ctx, "sh", "-c", "cat >/etc/octo/config.toml && systemctl restart octo.service")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("set config: %v\n%s", err, out)
	}
}

// cpuNsec is a unit's CPU time so far (cgroup accounting).
func cpuNsec(b testing.TB, bx *box.Box, unit string) int64 {
	b.Helper()
	out, err := bx.Run(context.Background(), "systemctl", "show", "-P", "CPUUsageNSec", unit)
	n, perr := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil || perr != nil {
		b.Fatalf("CPUUsageNSec of %s: %q %v %v", unit, out, err, perr)
	}
	return n
}
