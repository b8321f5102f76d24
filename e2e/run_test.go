//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// asUser runs a shell command in the box as user, with setpriv rather than
// runuser: no PAM session, so that timings measure octo and not a login.
func asUser(user, command string) string {
	return "setpriv --reuid=" + user + " --regid=" + user + " --init-groups env HOME=/home/" + user + " " + command
}

// octo run in a booted systemd, as a user over the Unix socket (the kernel
// says who calls): output and exit status come back, the session ran as
// that user, and a session killed by TERM exits 143.
func TestCLIRunInBox(t *testing.T) {
	bx := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		user   string // "" is root
		stdin  string
		cmd    string
		out    string
		status int
	}{
		{"bob", "", "octo run -- sh -c 'id -un; exit 7'", "bob\n", 7},
		{"bob", "", "octo run -- sh -c 'kill -TERM $$'", "", 143},
		{"bob", "echo in | ", "octo run -i -- cat", "in\n", 0},
		{"", "", "octo run --user alice -- id -un", "alice\n", 0}, // root on the socket is an admin
		{"bob", "", "octo run --user alice -- id -un 2>&1", "octo: only an admin may act for another user (?user=)\n", 1},
	} {
		cmd := tc.cmd
		if tc.user != "" {
			cmd = asUser(tc.user, cmd)
		}
		out, err := bx.Sh(ctx, tc.stdin+cmd)
		status := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", tc.cmd, err)
		}
		if out != tc.out || status != tc.status {
			t.Errorf("as %q: %s: %q, exit %d; want %q and %d (%v)", tc.user, tc.cmd, out, status, tc.out, tc.status, err)
		}
	}
}

// BenchmarkRunTrue is `octo run -- true` (start a session, attach, get its
// exit status) as a user over the Unix socket, against systemd-run --uid
// --wait --pipe true: each round runs one shell loop of each inside the
// booted box, octo's in a shell of the user's (as a person would type it),
// systemd-run's in root's (it needs root). ratio is octo's time over
// systemd-run's (target <= 0.25).
func BenchmarkRunTrue(b *testing.B) {
	bx := setup(b)
	ctx := context.Background()
	const perRound = 10
	loop := func(command string, user string) time.Duration {
		script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do %s >/dev/null; i=$((i+1)); done", perRound, command)
		if user != "" {
			script = asUser(user, "sh -c '"+script+"'")
		}
		start := time.Now()
		if out, err := bx.Sh(ctx, script); err != nil {
			b.Fatalf("%s: %v\n%s", command, err, out)
		}
		return time.Since(start)
	}
	const octoRun, systemdRun = "octo run -- true", "systemd-run --quiet --uid=bob --wait --pipe true"
	// octo version starts the same binary and does nothing: what any octo
	// command costs before it sends a byte.
	const octoVersion = "octo version"
	loop(octoRun, "bob") // the agent started, both paths warm
	loop(systemdRun, "")
	var octoT, sdT, versionT time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		octoT += loop(octoRun, "bob")
		sdT += loop(systemdRun, "")
		versionT += loop(octoVersion, "bob")
	}
	n := float64(b.N * perRound)
	b.ReportMetric(float64(octoT.Microseconds())/n, "octo-µs/run")
	b.ReportMetric(float64(sdT.Microseconds())/n, "systemd-run-µs/run")
	b.ReportMetric(float64(versionT.Microseconds())/n, "octo-version-µs/run")
	b.ReportMetric(float64(octoT)/float64(sdT), "ratio")
	b.ReportMetric(0, "ns/op")
}
